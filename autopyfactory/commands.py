"""Running external commands (argv lists only, always with a timeout, never raising)
and library calls with a timeout (``call``).

Every batch plugin that calls a command line tool (sbatch, squeue, scancel,
scontrol, ...) goes through ``run``; a plugin keeps the runner as an attribute
so a test or a benchmark can hand it another one, and the command names are
config keys (``batchstatus.slurm.squeue``, ...) so a stand-in can be put on
PATH or named explicitly.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``error`` is set when it failed in any way."""

    argv: tuple[str, ...]
    returncode: int | None  # None: it did not run to the end (not found, timeout)
    stdout: str
    stderr: str
    duration: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """One line for a cycle message: the command, how it failed, its stderr."""
        name = os.path.basename(self.argv[0]) if self.argv else "?"
        if self.ok:
            return f"{name} ok"
        detail = " ".join(self.stderr.split())[:500]
        return f"{name}: {self.error}" + (f": {detail}" if detail else "")


Runner = Callable[..., CommandResult]


def run(
    argv: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
    cwd: str | None = None,
) -> CommandResult:
    """Run ``argv`` (no shell) with ``timeout`` seconds; ``env`` is added to os.environ (None: removed).

    A command that cannot start, runs past its timeout (it is killed) or exits
    non-zero gives a result with ``error`` set; this function does not raise
    for any of these.
    """
    argv = tuple(str(a) for a in argv)
    environment = None
    if env:
        merged = {**os.environ, **env}
        environment = {name: value for name, value in merged.items() if value is not None}
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, errors="replace", timeout=timeout, env=environment,
            input=input, stdin=None if input is not None else subprocess.DEVNULL, cwd=cwd, close_fds=True,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return CommandResult(argv, None, "", stderr, time.monotonic() - started,
                             f"timed out after {timeout:g}s")
    except OSError as exc:
        return CommandResult(argv, None, "", "", time.monotonic() - started,
                             f"cannot run {argv[0]}: {exc.strerror or exc}")
    duration = time.monotonic() - started
    error = None if done.returncode == 0 else f"exit code {done.returncode}"
    return CommandResult(argv, done.returncode, done.stdout, done.stderr, duration, error)


class CallTimeout(TimeoutError):
    """A library call (e.g. the HTCondor bindings) did not return in time."""


def call(fn: Callable[..., T], *args: Any, timeout: float = DEFAULT_TIMEOUT, what: str = "", **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with a timeout, for library calls that have none of their own.

    The call runs in a daemon thread; after ``timeout`` seconds CallTimeout is
    raised and the thread is left to finish (or hang) on its own: a blocking C
    call cannot be interrupted, but the caller is never held up by it.
    Exceptions of ``fn`` are raised here unchanged.
    """
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller
            outcome["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=target, name=f"call:{what or getattr(fn, '__name__', 'fn')}", daemon=True)
    thread.start()
    if not finished.wait(timeout):
        raise CallTimeout(f"{what or getattr(fn, '__name__', 'call')} timed out after {timeout:g}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
