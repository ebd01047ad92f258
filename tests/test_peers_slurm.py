"""Two factory processes serving one WMS queue on the real Slurm cluster (tests/slurmcluster.py).

Both run ``Ready`` with ``sched.ready.sharewithpeers = true`` against the same
Local WMS spool. Their pilots are submitted with ``--begin=now+1hour`` so they
stay pending: the number of pending pilots is then exactly what the two
factories decided, and the target is the number of ready work items.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import ConfDir, stop_process, wait_for
from tests.slurmcluster import SlurmCluster

DEADLINE = 240.0


def queue_section(wmsqueue: str, spool: Path, slurm: SlurmCluster) -> str:
    keys = {
        "wmsqueue": wmsqueue,
        "wmsstatusplugin": "Local",
        "wmsstatus.local.spooldir": spool,
        "batchstatusplugin": "Slurm",
        "batchstatus.slurm.slurmconf": slurm.conf,
        "batchsubmitplugin": "Slurm",
        "batchsubmit.slurm.slurmconf": slurm.conf,
        "batchsubmit.slurm.extraargs": "--begin=now+1hour",
        "batchqueue": slurm.partition,
        "apfqueue.sleep": 1,
        "schedplugin": "Ready",
        "sched.ready.sharewithpeers": "true",
        "executable.arguments": f"--wrapperwmsqueue={wmsqueue} --wrapperplugin=local",
    }
    return "[SHARED]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"


def make_factory(root: Path, fid: str, wmsqueue: str, spool: Path, slurm: SlurmCluster) -> ConfDir:
    root.mkdir()
    confdir = ConfDir(root)
    path = confdir.write(queue_section(wmsqueue, spool, slurm),
                         "batchstatus.slurm.sleep = 0.5\nbatchstatus.slurm.maxage = 60\n"
                         "peers.alivecycles = 30\n")
    path.write_text(path.read_text().replace("factoryId = test-factory", f"factoryId = {fid}"))
    return confdir


def daemon(confdir: ConfDir) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "autopyfactory.cli.daemon", "--conf", str(confdir.root / "factory.conf"),
         "--foreground", "--log", str(confdir.root / "daemon.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


class Pilots:
    """Pending pilots per factory, straight from squeue (one line per array task)."""

    def __init__(self, slurm: SlurmCluster, fids: list[str]):
        self.slurm = slurm
        self.fids = fids

    def pending(self) -> dict[str, int]:
        """Per factory; squeue is retried: other tests may take the controller away for a moment."""

        def squeue() -> str:
            answer = subprocess.run(["squeue", "-h", "-r", "-t", "PENDING", "-o", "%k"], capture_output=True,
                                    text=True, env={**os.environ, **self.slurm.env}, timeout=60)
            assert answer.returncode == 0, answer.stderr.strip()
            return answer.stdout or "\n"  # no line at all is an answer too

        lines = wait_for(squeue, what="squeue to answer", timeout=DEADLINE, every=1.0).splitlines()
        return {fid: sum(1 for line in lines if line.startswith(f"apf:{fid}:")) for fid in self.fids}

    def cancel(self, fid: str) -> None:
        out = subprocess.run(["squeue", "-h", "-o", "%F|%k"], capture_output=True, text=True,
                             env={**os.environ, **self.slurm.env}, timeout=60).stdout
        jobs = sorted({row.split("|", 1)[0] for row in out.splitlines() if f"apf:{fid}:" in row})
        if jobs:
            subprocess.run(["scancel", *jobs], env={**os.environ, **self.slurm.env}, timeout=60,
                           capture_output=True)


def settle(pilots: Pilots, target: int, what: str, ceiling: int, quiet: float = 4.0) -> dict[str, int]:
    """Wait until the total pending reaches ``target`` and stays unchanged for ``quiet`` seconds.

    The total may never go above ``ceiling`` on the way.
    """
    seen = {"counts": None, "since": time.monotonic()}

    def settled() -> dict[str, int] | None:
        counts = pilots.pending()
        if sum(counts.values()) > ceiling:  # fails at once (an assertion would mean "not yet")
            pytest.fail(f"{what}: {counts} pending, more than {ceiling}")
        if counts != seen["counts"]:
            seen.update(counts=counts, since=time.monotonic())
            return None
        quiet_for = time.monotonic() - seen["since"]
        return counts if sum(counts.values()) >= target and quiet_for >= quiet else None

    counts = wait_for(settled, f"{what}: {target} pending, unchanged for {quiet:g}s", timeout=DEADLINE, every=0.5)
    print(f"{what}: {counts} pending for {target} ready")
    return counts


def test_two_factories_share_a_queue_and_one_takes_over(slurm, tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    wmsqueue = f"SHARED-{tag}"
    fid_a, fid_b = f"peer-a-{tag}", f"peer-b-{tag}"
    work = ConfDir(tmp_path)  # only its spool: the WMS queue both factories serve
    a = make_factory(tmp_path / "a", fid_a, wmsqueue, work.spool, slurm)
    b = make_factory(tmp_path / "b", fid_b, wmsqueue, work.spool, slurm)
    pilots = Pilots(slurm, [fid_a, fid_b])
    ready = 0

    def add(n: int) -> int:
        work.work(wmsqueue, n)
        return ready + n

    processes = [daemon(b)]
    try:
        # B alone first: it submits for 2 items and so counts as alive for A
        ready = add(2)
        counts = settle(pilots, ready, "B alone", ceiling=ready)
        assert counts == {fid_a: 0, fid_b: 2}

        # A joins; small steps until both have submitted (each one then counts as alive for the other)
        processes.append(daemon(a))
        for _ in range(10):
            before = sum(pilots.pending().values())
            ready = add(2)
            counts = settle(pilots, ready, "warm-up step", ceiling=max(before, ready) + 2)
            if counts[fid_a] and counts[fid_b]:
                break
        assert counts[fid_a] and counts[fid_b], f"A never submitted: {counts}"

        # a jump: together they cover it once, not twice
        before = sum(counts.values())
        ready = add(20)
        counts = settle(pilots, ready, "both after a jump of 20", ceiling=max(before, ready) + 2)
        assert sum(counts.values()) <= max(before, ready) + 2
        assert "shared by 2 alive factories" in (a.root / "daemon.log").read_text()

        # A stops and its pilots go (as if they ran); B alone brings the queue back to the target
        stop_process(processes[1])
        pilots.cancel(fid_a)
        wait_for(lambda: pilots.pending()[fid_a] == 0, what="A's pilots to go", every=0.5)
        ready = add(6)
        counts = settle(pilots, ready, "B alone after A stopped", ceiling=ready + 2)
        assert counts[fid_a] == 0 and ready <= counts[fid_b] <= ready + 2
    finally:
        for process in processes:
            stop_process(process)
        for fid in (fid_a, fid_b):
            pilots.cancel(fid)
