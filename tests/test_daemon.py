"""The daemon as an operator runs it: detach, pidfile, signals, privileges (real processes)."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import datagrams, local_queue, wait_for

DAEMON = [sys.executable, "-m", "autopyfactory.cli.daemon"]
REPO = Path(__file__).resolve().parent.parent


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Daemon:
    def __init__(self, confdir, root: Path):
        self.confdir = confdir
        self.pidfile = root / "run" / "apf.pid"
        self.log = root / "apf.log"
        self.stderr = root / "apf.stderr"
        self.started: list[int] = []

    def run(self, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [*DAEMON, "--conf", str(self.confdir.root / "factory.conf"), "--pidfile", str(self.pidfile),
                "--log", str(self.log), "--loglevel", "debug", *extra]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
        if result.returncode == 0 and "--foreground" not in extra:
            self.started.append(self.pid)
        return result

    @property
    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def logged(self, text: str) -> bool:
        return self.log.exists() and text in self.log.read_text()

    def stop_all(self) -> None:
        for pid in self.started:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def daemon(confdir, tmp_path):
    d = Daemon(confdir, tmp_path)
    yield d
    d.stop_all()


def two_queues(confdir, *names: str) -> str:
    return "".join(local_queue(n, confdir.spool) for n in names)


def test_start_detached_second_instance_refused_sigterm_stops(daemon, confdir):
    confdir.write(two_queues(confdir, "Q1"))
    first = daemon.run()
    assert first.returncode == 0, first.stderr
    assert "started" in first.stdout
    pid = daemon.pid
    assert alive(pid)
    assert os.getsid(pid) != os.getsid(0)  # a session of its own: detached from our terminal
    with open(f"/proc/{pid}/status") as handle:
        assert "Umask:\t0022" in handle.read()
    wait_for(lambda: daemon.logged("queue Q1 cycle 1"), what="the first cycle in the log")

    second = daemon.run()
    assert second.returncode == 1
    assert f"pid {pid}" in second.stderr and "not starting" in second.stderr
    assert daemon.pid == pid and alive(pid)

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to exit")
    assert daemon.logged("signal SIGTERM: stopping")
    assert daemon.logged("factory test-factory stopped")
    assert not daemon.pidfile.exists()


def test_stale_pidfile_is_taken_over(daemon, confdir):
    confdir.write(two_queues(confdir, "Q1"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    starts_over_a_pidfile_naming(daemon, dead.pid)
    assert daemon.logged(f"named pid {dead.pid}, which holds no lock")


def starts_over_a_pidfile_naming(daemon, pid: int) -> None:
    """A pidfile naming ``pid`` whose lock nobody holds: the daemon starts and takes it over."""
    daemon.pidfile.parent.mkdir(parents=True)
    daemon.pidfile.write_text(f"{pid}\n")
    result = daemon.run()
    assert result.returncode == 0, result.stderr
    assert daemon.pid != pid and alive(daemon.pid)


def test_bad_config_refuses_to_start_and_says_why(daemon, confdir):
    # an error outside every queue section (a bad queue alone does not stop the others:
    # tests/test_queue_config_errors.py)
    confdir.write(local_queue("Q1", confdir.spool), factory="maxperfactory.maximum = lots\n")
    result = daemon.run()
    assert result.returncode == 2
    assert "maxperfactory.maximum" in result.stderr and "lots" in result.stderr
    assert not daemon.pidfile.exists() or not daemon.pidfile.read_text().strip()


def test_sigusr2_reopens_logs_sighup_reloads_and_rejects_a_broken_config(daemon, confdir):
    confdir.write(two_queues(confdir, "Q1"))
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: daemon.logged("queue Q1 cycle 2"), what="cycles of Q1")

    # logrotate moves the file away and sends SIGUSR2: a fresh file, and a half-edited
    # queues.conf is not picked up by the rotation
    rotated = daemon.log.with_suffix(".log.1")
    daemon.log.rename(rotated)
    confdir.write(two_queues(confdir, "Q1", "Q2"))
    os.kill(pid, signal.SIGUSR2)
    wait_for(lambda: daemon.logged("log files reopened"), what="the reopened log")
    wait_for(lambda: daemon.logged("queue Q1 cycle"), what="Q1 in the new file")
    assert not daemon.logged("reload applied")
    # SIGHUP reloads
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: daemon.logged("reload applied: added ['Q2']"), what="the reload")
    wait_for(lambda: daemon.logged("queue Q2 cycle 1"), what="Q2's first cycle")
    assert "reload applied" not in rotated.read_text()

    # a broken file (it cannot be parsed): rejected whole, the old queues keep running
    (confdir.root / "queues.conf").write_text("Q4 broken\n" + two_queues(confdir, "Q1", "Q3"))
    os.kill(pid, signal.SIGHUP)
    wait_for(lambda: daemon.logged("reload rejected, old configuration stays in force"), what="the rejection")
    assert daemon.logged("comes before any [section]")
    size = len(daemon.log.read_text())
    wait_for(lambda: "queue Q2 cycle" in daemon.log.read_text()[size:], what="Q2 to keep cycling")
    assert not daemon.logged("queue Q3 cycle")

    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: daemon.logged("thread dump:"), what="the thread dump")
    # the cycle workers' threads, and every queue with its state (a queue in a cycle names its worker thread)
    assert daemon.logged("--- thread cycles-1") and daemon.logged("cycle workers: 4")
    assert daemon.logged("queue Q1: alive=True") and daemon.logged("queue Q2: alive=True")

    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to exit")


SLOW_SUBMIT = """
    import os, time
    from autopyfactory.config import Key
    from autopyfactory.interfaces import SubmitResult
    from autopyfactory.plugins.batchsubmit.local import Local

    class SlowLocal(Local):
        '''Local submission that lasts until the test says go (marks when it starts and ends).'''
        name = "SlowLocal"
        keys = {**Local.keys, "marker": Key("str", "")}

        def submit(self, n):
            marker = self.options["marker"]
            open(marker + ".started", "w").close()
            for _ in range(1200):
                if os.path.exists(marker + ".go"):
                    break
                time.sleep(0.05)
            result = super().submit(n)
            open(marker + ".finished", "w").write(str(result.count))
            return result
    """


def test_sigterm_lets_a_submission_under_way_finish(daemon, confdir, tmp_path):
    confdir.dropin("slowlocal.py", SLOW_SUBMIT)
    marker = tmp_path / "submit"
    queue = local_queue("SLOW", confdir.spool, **{"batchsubmit.slowlocal.marker": str(marker),
                                                   "executable": "/bin/true"})
    confdir.write(queue.replace("batchsubmitplugin = Local", "batchsubmitplugin = SlowLocal"))
    confdir.work("SLOW", 2)
    assert daemon.run().returncode == 0
    pid = daemon.pid
    wait_for(lambda: Path(str(marker) + ".started").exists(), what="the submission to start")
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: daemon.logged("signal SIGTERM: stopping"), what="the daemon to take the signal")
    assert alive(pid) and not Path(str(marker) + ".finished").exists()  # it waits for the submission
    Path(str(marker) + ".go").touch()
    wait_for(lambda: not alive(pid), what="the daemon to exit")
    assert Path(str(marker) + ".finished").read_text() == "2"
    assert daemon.logged("submitted 2")


def test_foreground_cycles_exit_zero(daemon, confdir):
    confdir.write(two_queues(confdir, "Q1"))
    result = daemon.run("--foreground", "--cycles", "2")
    assert result.returncode == 0, result.stderr
    assert daemon.logged("queue Q1 cycle 2")
    assert not daemon.pidfile.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
@pytest.mark.parametrize("factory_keys", ["", "logserver.enabled = true\nlogserver.port = 0\n"],
                         ids=["plain", "with-web-server"])
def test_runas_drops_privileges_with_supplementary_groups(confdir, factory_keys):
    user = pwd.getpwnam("nobody")
    root = Path(tempfile.mkdtemp(prefix="apf-runas-", dir="/tmp"))
    try:
        root.chmod(0o755)
        from tests.conftest import ConfDir

        conf = ConfDir(root)
        conf.write(local_queue("Q1", conf.spool), factory=factory_keys)
        conf.spool.mkdir()
        os.chown(conf.spool, user.pw_uid, user.pw_gid)
        # baseLogDir does not exist: created for nobody before privileges are dropped
        d = Daemon(conf, root)
        try:
            result = d.run("--runas", "nobody")
            assert result.returncode == 0, result.stderr
            pid = d.pid
            with open(f"/proc/{pid}/status") as handle:
                status = dict(line.split(":", 1) for line in handle.read().splitlines())
            assert status["Uid"].split()[:2] == [str(user.pw_uid)] * 2
            assert status["Gid"].split()[:2] == [str(user.pw_gid)] * 2
            groups = {int(g) for g in status["Groups"].split()}
            assert groups == set(os.getgrouplist("nobody", user.pw_gid))
            assert 0 not in groups
            wait_for(lambda: d.logged("queue Q1 cycle 1"), what="a cycle as nobody")
            assert d.logged("user nobody")
            assert conf.logs.stat().st_uid == user.pw_uid
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not alive(pid), what="the daemon to exit")
        finally:
            d.stop_all()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_runas_unknown_user_refused(daemon, confdir):
    confdir.write(two_queues(confdir, "Q1"))
    result = daemon.run("--runas", "no-such-user-apf")
    assert result.returncode == 2 and "no such user" in result.stderr


def test_log_to_syslog(daemon, confdir, tmp_path):
    import socket

    confdir.write(two_queues(confdir, "Q1"))
    path = str(tmp_path / "log.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(30)
    try:
        argv = [*DAEMON, "--conf", str(confdir.root / "factory.conf"), "--foreground", "--cycles", "1",
                "--log", "syslog"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "APF_SYSLOG_SOCKET": path}
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr
        messages = datagrams(server, quiet=1)
        assert any("autopyfactory[" in m and "queue Q1 cycle 1" in m for m in messages), messages[:5]
    finally:
        server.close()

    missing = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                             env={**env, "APF_SYSLOG_SOCKET": str(tmp_path / "nothing")})
    assert missing.returncode == 1 and "cannot log to syslog" in missing.stderr


def test_second_instance_without_pidfile_refuses(daemon, confdir):
    """No --pidfile: a default lock beside the store still keeps a second factory on the config from running."""
    confdir.write(two_queues(confdir, "Q1"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [*DAEMON, "--conf", str(confdir.root / "factory.conf"), "--log", str(daemon.log)]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert first.returncode == 0, first.stderr
    lock = confdir.root / "autopyfactory.pid"  # beside the store (apf.sqlite beside baseLogDir)
    pid = int(lock.read_text())
    daemon.started.append(pid)
    wait_for(lambda: daemon.logged("queue Q1 cycle 1"), what="the first cycle")
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert second.returncode == 1 and f"pid {pid}" in second.stderr and "not starting" in second.stderr
    assert alive(pid) and int(lock.read_text()) == pid
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), what="the daemon to exit")
    assert not lock.exists()


def test_pidfile_naming_a_live_unrelated_process_does_not_block(daemon, confdir, tmp_path):
    """Only the lock says a factory runs: a reused pid whose cmdline says 'autopyfactory' is not one."""
    confdir.write(two_queues(confdir, "Q1"))
    impostor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "autopyfactory"])
    try:
        starts_over_a_pidfile_naming(daemon, impostor.pid)
        assert daemon.logged(f"named pid {impostor.pid}")
    finally:
        impostor.kill()
        impostor.wait()


def survives_a_sighup_at(daemon, confdir, moment, env: dict, program: list[str] = DAEMON) -> None:
    """Start the daemon; SIGHUP it when ``moment(process)`` is true: it lives, reloads once running, stops cleanly."""
    argv = [*program, "--conf", str(confdir.root / "factory.conf"), "--foreground", "--log", str(daemon.log)]
    with open(daemon.stderr, "w") as stderr:  # a file, not a pipe: nothing blocks however much is written
        process = subprocess.Popen(argv, env={**env, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
                                   stderr=stderr, text=True)
    try:
        wait_for(lambda: process.poll() is not None or moment(process), timeout=30, every=0.001,
                 what="the moment to send SIGHUP")
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: daemon.logged("queue Q1 cycle 1") or process.poll() is not None, what="the first cycle")
        assert process.poll() is None, f"the daemon died: {process.returncode} {daemon.stderr.read_text()[-2000:]}"
        wait_for(lambda: daemon.logged("signal SIGHUP came while starting"), what="the early SIGHUP acted on")
        wait_for(lambda: daemon.logged("reload applied"), what="the reload")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_sighup_while_it_executes_itself_again_does_not_kill_the_daemon(daemon, confdir):
    """The daemon executes itself once more at start (autopyfactory/memory.py): a SIGHUP then waits for it."""
    from autopyfactory import memory

    confdir.write(two_queues(confdir, "Q1"))
    # the moment the new program starts: its environment has the marker, Python is still loading
    survives_a_sighup_at(daemon, confdir, lambda process: memory.RESTARTED.encode()
                         in Path(f"/proc/{process.pid}/environ").read_bytes(),
                         {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"})


SLOW_IMPORT = """
    # a drop-in file that takes its time to import (as a plugin on a slow shared file system may)
    import os, time
    open(os.environ["APF_TEST_MARKER"], "a").write(f"{os.getpid()}\\n")
    time.sleep(1.5)
"""


def test_sighup_while_starting_does_not_kill_the_daemon(daemon, confdir, tmp_path):
    """systemctl reload right after start: the SIGHUP is remembered and acted on once the factory runs."""
    confdir.write(two_queues(confdir, "Q1"))
    confdir.dropin("slowimport.py", SLOW_IMPORT)
    marker = tmp_path / "importing"
    survives_a_sighup_at(daemon, confdir, lambda process: marker.exists(),
                         {**os.environ, "APF_TEST_MARKER": str(marker)})


@pytest.mark.parametrize("delay", [0.1, 0.15, 0.2])
def test_sighup_right_after_start_does_not_kill_the_daemon(daemon, confdir, delay):
    """The installed program catches signals before its heavy imports (autopyfactory/start.py).

    Before: SIGHUP 0.1-0.2 s after start, while the daemon module imported the factory, exited 129.
    The interpreter's own start-up (before any program code runs, with ``site`` and an editable
    install's finder: up to 0.1 s here) can catch nothing: the delay counts from its end, which
    ``-X importtime`` output shows (the line of ``site``).
    """
    program = Path(sys.executable).with_name("autopyfactory")
    if not program.exists():
        pytest.skip(f"no installed console script {program} (make install)")
    confdir.write(two_queues(confdir, "Q1"))
    started: list[float] = []

    def moment(process) -> bool:
        if not started and daemon.stderr.exists() and "| site\n" in daemon.stderr.read_text():
            started.append(time.monotonic())
        return bool(started) and time.monotonic() - started[0] >= delay

    survives_a_sighup_at(daemon, confdir, moment, {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                         program=[str(program)])
