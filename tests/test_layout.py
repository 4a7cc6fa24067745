"""The layout shows the architecture, and stays that way (in the spirit of certbot's
forbidden-os-calls check): imports point one way, down the data flow; every file write,
rename and removal goes through fsutil; modules stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "spoolca"
# Bottom to top. A module may import its own layer or a lower one, never a higher one.
LAYERS = [
    ("floor", {"errors", "fsutil", "children", "log", "der", "dn", "findings", "config",
               "configtext", "openpgp", "untrusted", "memory", "tomlreader", "progress",
               "dnattributes", "constraints", "policysettings", "privileges", "privatekeys"}),
    ("keys", {"keys"}),
    ("x509", {"x509"}),
    ("register", {"register"}),
    ("report", {"report"}),
    ("backup", {"backup"}),
    ("spool", {"spool"}),
    ("authority", {"authority"}),
    ("process", {"process"}),
    ("service", {"service"}),
    ("top", {"cli", "clihelp", "commands", "demo", "manual", "__init__"}),
]
MAX_LINES = 420
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


@pytest.mark.parametrize("path", modules(), ids=lambda p: name_of(p))
def test_imports_point_down(path: Path):
    """No module imports a layer above its own (no cycles between stages)."""
    own = layer_of(name_of(path))
    upward = [m for m in imports(path) if m != "spoolca" and layer_of(m) > own]
    assert not upward, f"{name_of(path)} imports above itself: {upward}"


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


@pytest.mark.parametrize("path", [p for p in modules() if p.parent.name != "fsutil"],
                         ids=lambda p: name_of(p))
def test_every_write_goes_through_fsutil(path: Path):
    """fsutil alone writes, renames and removes: one place for modes, fsync, O_NOFOLLOW."""
    assert writes(path) == [], f"{name_of(path)} writes outside fsutil"


def test_the_check_sees_a_write(tmp_path: Path):
    """Counter-case: the checker itself catches each kind of write."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os, shutil\nos.rename(a, b)\nshutil.rmtree(c)\n"
                      "p.write_bytes(b'')\nopen(f, 'w')\nopen(g)\n'x'.replace('a', 'b')\n"
                      "os.open(h, os.O_RDONLY | os.O_NOFOLLOW)\nos.open(i, os.O_WRONLY)\n"
                      "os.open(j, flags)\n")
    assert len(writes(sample)) == 6


@pytest.mark.parametrize("path", modules(), ids=lambda p: name_of(p))
def test_modules_stay_small(path: Path):
    """A module per concept, readable in one sitting (~400 lines)."""
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{name_of(path)} has {lines} lines"
