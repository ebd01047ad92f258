"""The one command runner and the one timed library call (autopyfactory/commands.py)."""

from __future__ import annotations

import os
import threading

import pytest

from autopyfactory.commands import CallTimeout, TimedCaller, call, pid_exists, run
from tests.conftest import wait_for


def alive(pid: int) -> bool:
    if not pid_exists(pid):
        return False
    # a killed child of a reaped parent may linger a moment as a zombie of init
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_timeout_kills_the_grandchildren_too(tmp_path):
    """A command that started its own children leaves none running after its timeout."""
    pidfile = tmp_path / "grandchild.pid"
    script = f"sleep 300 >/dev/null 2>&1 </dev/null & echo $! > {pidfile}; wait"
    result = run(["sh", "-c", script], timeout=1.0)
    assert result.error == "timed out after 1s" and result.returncode is None and not result.ok
    grandchild = int(pidfile.read_text())
    try:
        wait_for(lambda: not alive(grandchild), timeout=10, what="the grandchild sleep to die")
    finally:
        if alive(grandchild):
            os.kill(grandchild, 9)


def test_timeout_returns_while_a_grandchild_holds_the_pipes(tmp_path):
    """The grandchild shares stdout: killing only the child would wait for the grandchild's end."""
    pidfile = tmp_path / "grandchild.pid"
    result = run(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; echo started; wait"], timeout=1.0)
    assert result.error == "timed out after 1s" and "started" in result.stdout
    # SIGKILL is delivered asynchronously: the pipes close as the grandchild exits, a moment before it is gone
    pid = int(pidfile.read_text())
    wait_for(lambda: not alive(pid), what="the grandchild killed", timeout=10)


def test_env_is_added_to_the_environment_and_stdin_is_fed():
    result = run(["sh", "-c", 'read line; echo "$APF_TEST_VALUE:$line:$PATH"'], timeout=10,
                 env={"APF_TEST_VALUE": "x"}, input="hello\n")
    assert result.ok and result.stdout.startswith("x:hello:") and result.stdout.strip().endswith(os.environ["PATH"])


def test_results_say_what_happened(tmp_path):
    missing = run([str(tmp_path / "nope")], timeout=10)
    assert not missing.ok and missing.returncode is None and "cannot run" in missing.describe()
    failed = run(["sh", "-c", "echo on stdout; exit 2"], timeout=10)
    assert not failed.ok and failed.returncode == 2 and failed.error == "exit code 2"
    assert failed.describe() == "sh: exit code 2: on stdout"  # no stderr: stdout says why
    assert run(["true"], timeout=10).describe() == "true ok"


def test_timed_caller_gives_up_and_refuses_to_pile_up():
    caller = TimedCaller("t")
    release = threading.Event()
    try:
        with pytest.raises(CallTimeout, match="t timed out: no answer within 0.2s"):
            caller(release.wait, 0.2)
        assert caller.in_call_since is None
        with pytest.raises(CallTimeout, match="still not returned"):
            caller(lambda: 1, 5)
    finally:
        release.set()
    wait_for(lambda: _returns(caller), timeout=10, what="the stuck call to end")


def _returns(caller: TimedCaller) -> bool:
    try:
        return caller(lambda: True, 5)
    except CallTimeout:
        return False


def test_call_is_a_one_off_timed_call():
    release = threading.Event()
    try:
        with pytest.raises(CallTimeout, match="hung timed out"):
            call(release.wait, 30, timeout=0.2, what="hung")
        assert call(lambda: "fresh", timeout=5) == "fresh"  # a one-off call is not held up by the stuck one
    finally:
        release.set()


def test_pid_exists_for_live_and_other_users_processes_only():
    import subprocess
    import sys

    assert pid_exists(os.getpid())
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: the pid names no process now
    assert not pid_exists(child.pid)
    # pid 1 belongs to another user (root): it exists although we may not signal it
    probe = ("import os\nfrom autopyfactory.commands import pid_exists\nprint(pid_exists(1))\n"
             "try:\n    os.kill(1, 0)\nexcept PermissionError:\n    print('not permitted')")
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    done = subprocess.run([*as_user, sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["True", "not permitted"], done.stderr


def test_consume_reads_the_output_while_the_command_runs(tmp_path):
    """Large output (squeue of 200,000 pilots) is parsed line by line as it comes, never held whole:
    here the command writes its second line only after the consumer has seen the first."""
    seen = tmp_path / "seen"
    script = f"echo first; while [ ! -e {seen} ]; do sleep 0.05; done; echo second; echo oops >&2"

    def consume(lines):
        got = [next(lines)]
        seen.touch()
        return got + list(lines)

    result = run(["sh", "-c", script], timeout=30, consume=consume)
    assert result.ok and result.value == ["first", "second"] and result.stdout == ""
    assert result.stderr == "oops\n"


def test_consume_gives_no_value_when_the_command_fails_or_times_out(tmp_path):
    failed = run(["sh", "-c", "echo partial; echo broken >&2; exit 3"], timeout=30, consume=list)
    assert failed.error == "exit code 3" and failed.value is None and "broken" in failed.describe()
    pidfile = tmp_path / "pid"
    hung = run(["sh", "-c", f"echo $$ > {pidfile}; echo partial; sleep 300"], timeout=1.0, consume=list)
    assert hung.error == "timed out after 1s" and hung.value is None and hung.returncode is None
    wait_for(lambda: not alive(int(pidfile.read_text())), what="the timed out command killed")


def test_consume_raising_kills_the_command_and_raises(tmp_path):
    pidfile = tmp_path / "pid"

    def consume(lines):
        next(lines)
        raise ValueError("not squeue output")

    with pytest.raises(ValueError, match="not squeue output"):
        run(["sh", "-c", f"echo $$ > {pidfile}; echo bad; sleep 300"], timeout=60, consume=consume)
    wait_for(lambda: not alive(int(pidfile.read_text())), what="the command killed")


def test_streamed_lines_are_whole_across_any_chunk_boundary():
    """Streamed output is taken as the pipe gives it (a megabyte at a time, not a line at a time):
    a line, a \\r\\n or a UTF-8 character cut between two reads comes out whole, as text mode reads it."""
    from autopyfactory.commands import _lines

    class Pipe:
        def __init__(self, chunks):
            self.chunks = list(chunks)

        def read1(self, n):
            return self.chunks.pop(0) if self.chunks else b""

    chunks = [b"a\r", b"\nb\n", b"c\rd", b"\r\n\xc3", b"\xa9t\xff", b"\n\n", b"last"]
    assert list(_lines(Pipe(chunks))) == ["a", "b", "c", "d", "\u00e9t\ufffd", "", "last"]
    whole = b"".join(chunks)
    for size in range(1, len(whole) + 1):  # every way of cutting it gives the same lines
        pieces = [whole[i:i + size] for i in range(0, len(whole), size)]
        assert list(_lines(Pipe(pieces))) == ["a", "b", "c", "d", "\u00e9t\ufffd", "", "last"], size
    assert list(_lines(Pipe([b"x\r"]))) == ["x"] and list(_lines(Pipe([b"y\n"]))) == ["y"]
    assert list(_lines(Pipe([]))) == []
