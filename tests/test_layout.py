"""The layout shows the architecture, and stays that way (in the spirit of certbot's
forbidden-os-calls check): imports point one way, down the data flow; every file write,
rename and removal goes through fsutil; modules stay small enough to read."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

from spoolca.manual import layout

PACKAGE = Path(__file__).resolve().parent.parent / "spoolca"
# Bottom to top (spoolca.manual.layout, which the package map is generated from too).
LAYERS = [(name, members) for name, members, _what in layout.LAYERS]
MAX_LINES = 400   # a signal for review
HARD_LIMIT = 600  # a wall
# Calls that write, rename or remove: allowed in the fsutil package alone.
_MODULE_CALLS = {
    "os": {"rename", "replace", "open", "mkdir", "makedirs", "unlink", "remove", "rmdir",
           "link", "symlink", "chmod", "fchmod", "chown", "truncate", "renames"},
    "shutil": {"move", "copy", "copy2", "copyfile", "copytree", "rmtree", "chown"},
}
_PATH_METHODS = {"write_text", "write_bytes", "mkdir", "touch", "unlink", "rmdir",
                 "symlink_to", "hardlink_to", "chmod", "rename"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def layer_of(module: str) -> int:
    """The layer of `spoolca.a.b` by its first component."""
    head = module.split(".")[1] if module.count(".") else "__init__"
    for index, (_name, members) in enumerate(LAYERS):
        if head in members:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def name_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(relative.parts).removesuffix(".__init__")


def imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "spoolca") and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("spoolca")]
    return found


def test_imports_point_down():
    """No module imports a layer above its own (no cycles between stages): every
    offender listed at once."""
    offenders = {}
    for path in modules():
        own = layer_of(name_of(path))
        upward = [m for m in imports(path) if m != "spoolca" and layer_of(m) > own]
        if upward:
            offenders[name_of(path)] = upward
    assert offenders == {}, f"modules importing above themselves: {offenders}"


def test_the_check_sees_an_upward_import(tmp_path: Path):
    """Counter-case: an x509 module importing the service layer is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("from spoolca.service.daemon import Daemon\nimport spoolca.cli\n")
    upward = [m for m in imports(sample) if layer_of(m) > layer_of("spoolca.x509.policy")]
    assert upward == ["spoolca.service.daemon", "spoolca.cli"]


_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"}


def _opens_for_writing(call: ast.Call) -> bool:
    """os.open(path, flags): a write unless its flags are spelled out and read-only."""
    if len(call.args) < 2:
        return True
    names = {n.attr for n in ast.walk(call.args[1]) if isinstance(n, ast.Attribute)}
    return not names or bool(names & _WRITE_FLAGS)


def writes(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if owner == "os" and func.attr == "open" and not _opens_for_writing(node):
                continue  # reading a file (untrusted input is read outside fsutil)
            if owner in _MODULE_CALLS and func.attr in _MODULE_CALLS[owner]:
                found.append(f"{owner}.{func.attr} (line {node.lineno})")
            elif owner not in _MODULE_CALLS and func.attr in _PATH_METHODS:
                found.append(f".{func.attr} (line {node.lineno})")
        elif isinstance(func, ast.Name) and func.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next(
                (k.value for k in node.keywords if k.arg == "mode"), None)
            text = mode.value if isinstance(mode, ast.Constant) else "r"
            if set(str(text)) & set("wax+"):
                found.append(f"open(..., {text!r}) (line {node.lineno})")
    return found


def test_every_write_goes_through_fsutil():
    """fsutil alone writes, renames and removes: one place for modes, fsync, O_NOFOLLOW.
    Every offender listed at once."""
    offenders = {name_of(p): found for p in modules() if p.parent.name != "fsutil"
                 and (found := writes(p))}
    assert offenders == {}, f"modules writing outside fsutil: {offenders}"


def test_the_check_sees_a_write(tmp_path: Path):
    """Counter-case: the checker itself catches each kind of write."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os, shutil\nos.rename(a, b)\nshutil.rmtree(c)\n"
                      "p.write_bytes(b'')\nopen(f, 'w')\nopen(g)\n'x'.replace('a', 'b')\n"
                      "os.open(h, os.O_RDONLY | os.O_NOFOLLOW)\nos.open(i, os.O_WRONLY)\n"
                      "os.open(j, flags)\n")
    assert len(writes(sample)) == 6


class ReviewWarning(UserWarning):
    """Shown in the warnings summary, never a failure (pyproject.toml filterwarnings)."""


def test_modules_stay_small():
    """A module per concept, readable in one sitting: past ~400 lines is a signal to look
    again (listed as a warning for review), past 600 a wall."""
    sizes = {name_of(p): len(p.read_text().splitlines()) for p in modules()}
    too_big = {name: n for name, n in sizes.items() if n > HARD_LIMIT}
    assert too_big == {}, f"modules past {HARD_LIMIT} lines: {too_big}"
    review = {name: n for name, n in sorted(sizes.items()) if n > MAX_LINES}
    if review:
        warnings.warn(ReviewWarning(f"modules past {MAX_LINES} lines, worth a look: "
                                    f"{review}"), stacklevel=1)


_KEY_ACCESS = {"_authority", "_issuing", "load_authorities"}


def key_access(path: Path) -> list[str]:
    """Where PATH reaches a CA key other than through CASession.preflight."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        name = node.attr if isinstance(node, ast.Attribute) else \
            node.id if isinstance(node, ast.Name) else \
            node.name if isinstance(node, ast.alias) else None
        if name in _KEY_ACCESS:
            found.append(f"{name} (line {getattr(node, 'lineno', '?')})")
    return found


def test_only_the_pre_flight_hands_out_a_ca_key():
    """One pre-flight: clock, keys, audit trail, in that order, once per operation. A
    CA's key is reached only through CASession.preflight (the session's own _authority
    and _issuing, and authority.unlock's load_authorities, stay inside the session), so
    a new signing path cannot skip it."""
    owners = {"spoolca.process.session", "spoolca.authority.unlock"}
    offenders = {name_of(p): found for p in modules() if name_of(p) not in owners
                 and (found := key_access(p))}
    assert offenders == {}, f"a CA key reached around the pre-flight: {offenders}"


def test_the_check_sees_a_key_reached_around_the_pre_flight(tmp_path: Path):
    """Counter-case: a command unlocking a key itself is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text("root = session._authority('root')\n"
                      "from spoolca.authority.unlock import load_authorities\n")
    assert len(key_access(sample)) == 2


def transactions(path: Path) -> list[int]:
    """Lines where PATH opens a register transaction (x.transaction(...))."""
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "transaction"]


def test_the_command_line_opens_no_transaction():
    """The CLI parses, calls and renders: what it records is recorded by the layer that
    owns it (a register transaction and its audit entry in one place), never spelled out
    in a command."""
    top = [p for p in modules() if layer_of(name_of(p)) == len(LAYERS) - 1]
    offenders = {name_of(p): lines for p in top if (lines := transactions(p))}
    assert offenders == {}, f"transactions opened in the command line: {offenders}"


def test_the_check_sees_a_transaction(tmp_path: Path):
    """Counter-case."""
    sample = tmp_path / "sample.py"
    sample.write_text("with store.transaction('cli', now) as tx:\n    tx.record('x', {})\n")
    assert transactions(sample) == [1]



# The fsutil calls that write, and register.audit.export (it writes the folder it is given).
_WRITERS = {"atomic_write", "atomic_write_stream", "append_private", "ensure_dir", "move",
            "remove_file", "remove_tree", "remove_empty_dirs", "reveal", "stage_folder",
            "write_new", "export"}
_OUTGOING_NAMES = {"outgoing", "Outgoing"}
PUBLISHER = "spoolca.spool.outgoing"


def _named(node: ast.AST) -> str | None:
    return node.attr if isinstance(node, ast.Attribute) else \
        node.id if isinstance(node, ast.Name) else None


def outgoing_writes(path: Path) -> list[str]:
    """Functions of PATH that both reach outgoing/ (the `outgoing` literal, attribute or
    variable, or the Outgoing class) and call a writer: the shape of a second path into
    what the appliance hands out."""
    found = []
    for function in ast.walk(ast.parse(path.read_text())):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        nodes = list(ast.walk(function))
        reaches = any(_named(n) in _OUTGOING_NAMES or
                      (isinstance(n, ast.Constant) and n.value == "outgoing") for n in nodes)
        calls = [_named(n.func) for n in nodes if isinstance(n, ast.Call)]
        if reaches and (written := sorted({c for c in calls if c in _WRITERS})):
            found.append(f"{function.name} (line {function.lineno}: {', '.join(written)})")
    return found


def test_one_writer_of_outgoing():
    """DESIGN's one publication path: results, CA files, CRLs, the audit export, ceremony
    records and cross-certificates are written into outgoing/ by spoolca.spool.outgoing
    alone; everything else reads it, or hands it bytes. Every offender listed at once."""
    offenders = {name_of(p): found for p in modules() if name_of(p) != PUBLISHER
                 and (found := outgoing_writes(p))}
    assert offenders == {}, f"functions writing into outgoing/ themselves: {offenders}"


def test_the_check_sees_a_second_writer_of_outgoing(tmp_path: Path):
    """Counter-case: a command writing a file into outgoing/ itself is caught, in each
    spelling; one that hands it to the publisher is not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def a(config):\n    atomic_write(config.spool_dir / 'outgoing' / 'x', b'')\n"
        "def b(spool):\n    folder = ensure_dir(spool.outgoing / 'ca')\n"
        "def c(store, config, key):\n    export(store, Outgoing.of(config).audit, key)\n"
        "def d(session, data):\n    return session.outgoing.ca_file('x.pem', data)\n")
    assert [found.split()[0] for found in outgoing_writes(sample)] == ["a", "b", "c"]
