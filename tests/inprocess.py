"""The command line run inside the test process, its standard streams captured.

A subprocess costs a test some 0.3 s of interpreter start and imports per call, and most
tests call spoolca many times; what they check is what the command does, not how Python
starts. So `tests.pki.spoolca` runs `spoolca.cli.main` here, as the installed entry point
does, and returns what `subprocess.run` would have. Real subprocesses remain where the
process is the subject: the daemon, signals and kills, a wrong wall clock (a preloaded
shim), a PKCS#11 module's own configuration, root's commands that change their user, and
tests marked `subprocess` (one per entry point at least: tests/test_entry_points.py).
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

__all__ = ["needs_subprocess", "run_in_process"]

# A variable the process must have from its start (a preloaded library, a PKCS#11
# module's configuration read once per process, systemd's notification socket).
_PROCESS_WIDE = ("LD_PRELOAD", "SOFTHSM2_CONF", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                 "WATCHDOG_PID", "PYTHONPATH", "MAINPID")


def needs_subprocess(argv: Sequence[str], env: Mapping[str, str] | None) -> bool:
    """Whether this call must be a process of its own (see the module's docstring)."""
    if any(name in (env or {}) for name in _PROCESS_WIDE):
        return True
    if "daemon" in argv[:3] or any(_names_a_token(a) for a in argv):
        return True
    return _changes_user(argv, env)


def _names_a_token(argument: str) -> bool:
    """An argument about a PKCS#11 token, or a file (a configuration, a ceremony file)
    that names one: the module keeps its first configuration for the process's life."""
    if "pkcs11" in argument or "token" in argument:
        return True
    path = Path(argument)
    with contextlib.suppress(OSError, ValueError):
        if path.is_file() and path.stat().st_size < 1 << 20:
            lines = path.read_bytes().splitlines()
            return any(b'"pkcs11"' in line for line in lines if not line.lstrip().startswith(b"#"))
    return False


def _changes_user(argv: Sequence[str], env: Mapping[str, str] | None) -> bool:
    """Root's command on a state directory someone else owns becomes that owner (and
    keeps a root helper): not something the test process may do to itself."""
    from spoolca.cli import build_parser
    from spoolca.commands.asowner import state_directory

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(
                io.StringIO()), _environment(env):
            info = state_directory(build_parser().parse_args(list(argv)))
    except SystemExit:
        return False
    return info is not None and info.st_uid != 0


def run_in_process(argv: Sequence[str], env: Mapping[str, str] | None = None,
                   stdin: bytes | None = None, timeout: float = 120
                   ) -> subprocess.CompletedProcess[str]:
    """`spoolca ARGV` in this process: exit status, stdout and stderr as text. A call
    that outlives TIMEOUT ends the test process with every thread's stack (the
    subprocess's timeout, kept)."""
    from spoolca.cli import main
    from spoolca.host.fsutil import release_instance_locks
    from spoolca.log import configure_logging

    out, err = _stream(), _stream()
    faulthandler.dump_traceback_later(timeout, exit=True)
    try:
        with _environment(env), _streams(_stream(stdin or b""), out, err), \
                _interpreter_warnings():
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse: usage errors, --help, --version
                code = _exit_status(exc)
    finally:
        faulthandler.cancel_dump_traceback_later()
        release_instance_locks()  # "held until the process ends": the command's end
        configure_logging(None)   # later log lines go to the real stderr, not this one
    return subprocess.CompletedProcess(["spoolca", *argv], code, _text(out), _text(err))


def _stream(data: bytes = b"") -> io.TextIOWrapper:
    """A text stream with a binary buffer underneath, as a real one has."""
    return io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="replace",
                            write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    stream.flush()
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", errors="replace")


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _streams(stdin: io.TextIOWrapper, stdout: io.TextIOWrapper, stderr: io.TextIOWrapper
             ) -> Iterator[None]:
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        yield
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved


@contextlib.contextmanager
def _interpreter_warnings() -> Iterator[None]:
    """The warning filters a fresh interpreter has, not pytest's (which turn every warning
    into an exception: a library's deprecation warning would change what the command
    does)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.filterwarnings("ignore", category=category)
        yield


@contextlib.contextmanager
def _environment(extra: Mapping[str, str] | None) -> Iterator[None]:
    """The environment plus EXTRA for the call; whatever the command changed is undone."""
    saved = dict(os.environ)
    os.environ.update(extra or {})
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)

