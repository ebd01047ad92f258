"""The daemon in the foreground: --cycles, refusing bad config, clean stop on signals."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.conftest import local_queue


def daemon(conf, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(conf),
                             "--foreground", "--log", "stdout", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_cycles_then_exit_zero(confdir):
    conf = confdir.write(local_queue("Q", confdir.spool))
    confdir.work("Q", 2)
    proc = daemon(conf, "--cycles", "3")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "queue Q cycle 3:" in out
    assert "queue Q cycle 4:" not in out


def test_refuses_to_start_on_invalid_factory_config(confdir):
    # an error outside every queue section stops the start; the error names file, section and key
    conf = confdir.write(local_queue("Q", confdir.spool), factory="alarms.interval = often\n")
    proc = daemon(conf)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, out
    assert "refusing to start" in out
    assert "[Factory] alarms.interval" in out


def test_an_invalid_queue_does_not_stop_the_others(confdir):
    # one stale queue (issue 24): it is not started, says why, and the good queue runs its cycles
    conf = confdir.write(local_queue("Q", confdir.spool, schedplugin="Nope") + local_queue("GOOD", confdir.spool))
    proc = daemon(conf, "--cycles", "2")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "[Q] schedplugin: unknown scheduler plugin" in out and "queue Q not started" in out
    assert "queue GOOD cycle 2:" in out and "queue Q cycle" not in out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_thread_quickly(confdir, signum):
    # after their first cycle both queues sleep an hour: the signal has to cut that short
    hour = {"apfqueue.sleep": "3600"}
    conf = confdir.write(local_queue("A", confdir.spool, **hour) + local_queue("B", confdir.spool, **hour))
    proc = daemon(conf)
    waiting = {"queue A cycle 1:", "queue B cycle 1:"}
    for line in proc.stdout:
        waiting = {w for w in waiting if w not in line}
        if not waiting:
            break
    assert not waiting, f"never logged {waiting}"
    proc.send_signal(signum)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "factory test-factory stopped" in out
