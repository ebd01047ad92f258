"""Running external commands and library calls, always with a timeout.

``run`` runs a command line tool (argv lists only, never a shell) and never
raises: every batch plugin (sbatch, squeue, scancel, scontrol, ...) and every
credential plugin (voms-proxy-init, a token renewal command, ...) goes
through it. A plugin keeps the runner as an attribute so a test or a
benchmark can hand it another one, and the command names are config keys
(``batchstatus.slurm.squeue``, ...) so a stand-in can be put on PATH or
named explicitly.

``TimedCaller`` and ``call`` give a library call that has no timeout of its
own (e.g. the HTCondor bindings) one.
"""

from __future__ import annotations

import codecs
import functools
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TIMEOUT = 60.0
READ_CHUNK = 1 << 20  # streamed output is read as it comes, at most this many bytes at a time
KILLED_OUTPUT_WAIT = 5.0  # after a kill: how long to wait for the last output of the killed group


@dataclass(frozen=True)
class CommandResult:
    """What a command did. ``error`` is set (and ``ok`` false) when it failed in any way."""

    argv: tuple[str, ...]
    returncode: int | None  # None: it did not run to the end (not found, timeout)
    stdout: str
    stderr: str
    duration: float
    error: str | None = None  # "exit code 3", "timed out after 60s", "cannot run ...: ..."
    value: Any = None  # run(consume=...): what ``consume`` returned (None when the command failed)

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """One line for a cycle or credential message: the command, how it failed, its output."""
        name = os.path.basename(self.argv[0]) if self.argv else "?"
        if self.ok:
            return f"{name} ok"
        detail = " ".join((self.stderr.strip() or self.stdout).split())[:500]
        return f"{name}: {self.error}" + (f": {detail}" if detail else "")


Runner = Callable[..., CommandResult]


def run(
    argv: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    env: Mapping[str, str | None] | None = None,
    input: str | None = None,
    cwd: str | None = None,
    consume: Callable[[Iterator[str]], Any] | None = None,
) -> CommandResult:
    """Run ``argv`` (no shell) with ``timeout`` seconds; ``env`` is added to os.environ (None: removed).

    A command that cannot start, runs past its timeout or exits non-zero
    gives a result with ``error`` set; this function does not raise for any
    of these. The command gets its own process group: on timeout the whole
    group is killed, so nothing it started lives on or keeps our pipes open.

    ``consume``: for output too large to hold whole (squeue of 200,000 pilots):
    it gets the output's lines (without their line ends) while the command
    runs, and its return value is the result's ``value`` (``stdout`` is then
    empty); if it raises, the command is killed and the exception goes on to
    the caller. A command that fails or times out gives ``value`` None, whatever
    ``consume`` made of the part it saw.
    """
    argv = tuple(str(a) for a in argv)
    environment = None
    if env:
        merged = {**os.environ, **env}
        environment = {name: value for name, value in merged.items() if value is not None}
    started = time.monotonic()
    if consume is not None:
        return _run_streamed(argv, timeout, environment, cwd, consume, started)
    try:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
            env=environment, cwd=cwd, close_fds=True, start_new_session=True,
        )
    except OSError as exc:
        return CommandResult(argv, None, "", "", time.monotonic() - started,
                             f"cannot run {argv[0]}: {exc.strerror or exc}")
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        stdout, stderr = _kill_group(process)
        return CommandResult(argv, None, stdout, stderr, time.monotonic() - started,
                             f"timed out after {timeout:g}s")
    error = None if process.returncode == 0 else f"exit code {process.returncode}"
    return CommandResult(argv, process.returncode, stdout, stderr, time.monotonic() - started, error)


def _run_streamed(argv: tuple[str, ...], timeout: float, environment: dict[str, str] | None, cwd: str | None,
                  consume: Callable[[Iterator[str]], Any], started: float) -> CommandResult:
    """``run`` with ``consume`` reading stdout as it comes; stderr goes to a file (a pipe could fill up)."""
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                env=environment, cwd=cwd, close_fds=True, start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(argv, None, "", "", time.monotonic() - started,
                                 f"cannot run {argv[0]}: {exc.strerror or exc}")
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            _kill(process)

        timer = threading.Timer(timeout, kill)
        timer.daemon = True
        timer.start()
        try:
            with process.stdout:
                value = consume(_lines(process.stdout))
            process.wait(max(0.0, timeout - (time.monotonic() - started)) + KILLED_OUTPUT_WAIT)
        except BaseException:
            _kill(process)
            process.wait()
            raise
        finally:
            timer.cancel()
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    duration = time.monotonic() - started
    if timed_out.is_set():
        return CommandResult(argv, None, "", stderr, duration, f"timed out after {timeout:g}s")
    if process.returncode != 0:
        return CommandResult(argv, process.returncode, "", stderr, duration, f"exit code {process.returncode}")
    return CommandResult(argv, 0, "", stderr, duration, None, value)


def _lines(stream) -> Iterator[str]:
    """The lines of a byte stream as they come, decoded (UTF-8, bad bytes replaced) and without
    their ends (``\n``, ``\r\n`` or ``\r``, as text mode reads them).

    Whatever the pipe holds is taken at once and split in one call: reading line by line
    and stripping each cost a fifth of parsing squeue's 200,000 lines."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    while chunk := stream.read1(READ_CHUNK):
        text = rest + decoder.decode(chunk)
        if "\r" in text:  # a \r at the end waits: the next chunk may begin with its \n
            held = "\r" if text.endswith("\r") else ""
            text = text[:len(text) - len(held)].replace("\r\n", "\n").replace("\r", "\n") + held
        cut = text.rfind("\n")
        if cut < 0:
            rest = text
            continue
        rest = text[cut + 1:]
        yield from text[:cut].split("\n")
    rest += decoder.decode(b"", final=True)
    if rest:
        last = rest.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if last[-1] == "":  # it ended with a lone \r: that ended the line
            last.pop()
        yield from last


def _kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        try:
            process.kill()
        except OSError:
            pass


def _kill_group(process: subprocess.Popen) -> tuple[str, str]:
    """Kill the command and everything it started; (stdout, stderr) it wrote before."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        process.kill()
    try:
        return process.communicate(timeout=KILLED_OUTPUT_WAIT)
    except subprocess.TimeoutExpired:  # a descendant that left the group still holds a pipe
        process.kill()
        process.wait()
        return "", ""


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: it exists, we may not signal it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CallTimeout(TimeoutError):
    """A library call (e.g. the HTCondor bindings) did not return in time."""


class TimedCaller:
    """Runs calls in a helper thread and gives up waiting for one after its timeout.

    Python cannot kill a thread: a call that overran is abandoned and keeps
    running in the background (a blocking C call cannot be interrupted).
    Later calls still go ahead (a hung call must never block recovery) until
    ``max_abandoned`` abandoned calls are still running at once; then every
    new call fails at once instead of piling up more stuck threads.
    Exceptions of the call are raised unchanged.
    """

    def __init__(self, name: str, max_abandoned: int = 1):
        self.name = name
        self.max_abandoned = max(1, int(max_abandoned))
        self._abandoned: list[tuple[threading.Thread, float]] = []  # (thread, started)
        self.in_call_since: float | None = None

    @property
    def abandoned(self) -> int:
        """Abandoned calls still running."""
        return sum(thread.is_alive() for thread, _ in list(self._abandoned))

    def __call__(self, fn: Callable[[], T], timeout: float) -> T:
        self._abandoned = [(t, s) for t, s in self._abandoned if t.is_alive()]
        if len(self._abandoned) >= self.max_abandoned:
            oldest = time.time() - min(s for _, s in self._abandoned)
            raise CallTimeout(f"{self.name}: {len(self._abandoned)} call(s) abandoned after their deadline"
                              f" have still not returned (oldest started {oldest:.0f}s ago)")
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def target() -> None:
            try:
                outcome["value"] = fn()
            except BaseException as exc:  # handed to the caller
                outcome["error"] = exc
            finally:
                done.set()

        thread = threading.Thread(target=target, name=f"call:{self.name}", daemon=True)
        started = time.time()
        self.in_call_since = started
        thread.start()
        try:
            if not done.wait(timeout):
                self._abandoned.append((thread, started))
                raise CallTimeout(f"{self.name} timed out: no answer within {timeout:g}s")
        finally:
            self.in_call_since = None
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def call(fn: Callable[..., T], *args: Any, timeout: float = DEFAULT_TIMEOUT, what: str = "", **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` with a timeout, as a one-off ``TimedCaller`` named ``what``."""
    caller = TimedCaller(what or getattr(fn, "__name__", "call"))
    return caller(functools.partial(fn, *args, **kwargs), timeout)
