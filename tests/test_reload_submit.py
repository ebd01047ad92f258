"""A live reload never lets two instances of one queue submit (real daemon, real Slurm).

Before, ``Factory.stop_queue`` gave up after 10 s: with an ``sbatch`` slower
than that, the new instance started while the old one was still inside
sbatch, planned from a batch status without those pilots, and submitted them
again (20 pilots for 10 ready items).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import ConfDir
from tests.slurmcluster import SlurmCluster
from tests.test_daemon import Daemon, alive
from tests.test_slurm_cluster import (
    FACTORY_TIMING,
    calls,
    cancel_factory_pilots,
    slurm_queue,
    wait_for,
    write_factory,
)


def slow_sbatch(directory: Path, seconds: float) -> tuple[str, Path]:
    """An ``sbatch`` stand-in whose first call takes ``seconds`` longer than the real one."""
    log = directory / "sbatch.calls"
    log.write_text("")
    script = directory / "slow-sbatch"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"first = not open({str(log)!r}).read()\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(repr(sys.argv[1:]) + '\\n')\n"
        f"if first:\n    time.sleep({seconds})\n"
        "os.execvp('sbatch', ['sbatch'] + sys.argv[1:])\n"
    )
    script.chmod(0o755)
    return str(script), log


def pilots(slurm: SlurmCluster, factory: str) -> int:
    out = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%k"], capture_output=True, text=True,
                         env={**os.environ, **slurm.env}, timeout=60).stdout
    return sum(1 for row in out.splitlines() if f"apf:{factory}:" in row)


def test_reload_during_a_slow_sbatch_submits_once(slurm, confdir: ConfDir, tmp_path: Path):
    sbatch, sbatch_log = slow_sbatch(tmp_path, 14.0)
    queue = slurm_queue("SLOWQ", confdir, slurm, "squeue", sbatch, executable="/bin/sleep",
                        executable__arguments="300", batchsubmit__slurm__extraargs="--hold")
    # held pilots stay pending: Ready's "10 ready - 10 pending" then asks for none
    factory_id = write_factory(confdir, queue, FACTORY_TIMING)
    confdir.work("SLOWQ", 10)
    daemon = Daemon(confdir, tmp_path)
    try:
        assert daemon.run().returncode == 0
        pid = daemon.pid
        wait_for(lambda: calls(sbatch_log), "the first sbatch call")
        # the queue is edited and reloaded while its sbatch is under way
        queues = confdir.root / "queues.conf"
        queues.write_text(queues.read_text().replace("apfqueue.sleep = 0.5", "apfqueue.sleep = 0.6"))
        os.kill(pid, signal.SIGHUP)
        wait_for(lambda: daemon.logged("reload applied"), "the reload")
        # the new instance plans from a status that shows the 10 pilots: it asks for none
        wait_for(lambda: daemon.log.read_text().count("Ready: 0 (10 ready") >= 3,
                 "three cycles of the new instance that see the pilots")
        assert len(calls(sbatch_log)) == 1, calls(sbatch_log)
        assert pilots(slurm, factory_id) == 10
        assert daemon.logged("waiting up to 70s for its submission under way")
        assert alive(pid)
    finally:
        daemon.stop_all()
        cancel_factory_pilots(slurm, factory_id)
