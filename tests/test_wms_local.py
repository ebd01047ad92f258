"""The Local WMS (spool directory): an unreadable spool is unknown, never zero."""

from __future__ import annotations

import shutil
import time

import pytest

from autopyfactory.context import FactoryContext
from autopyfactory.factory import Factory
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.wmsstatus.local import Local
from autopyfactory.status import Unknown
from tests.conftest import local_queue, wait_for


def make_plugin(confdir, spool) -> Local:
    confdir.write(local_queue("q", spool))
    config = confdir.load()
    context = FactoryContext(config)
    return Local({"spooldir": str(spool)}, context)


def test_counts_and_missing_directory_is_created_with_zero(confdir):
    confdir.work("A", 3)
    (confdir.spool / "A" / "claimed").mkdir()
    (confdir.spool / "A" / "claimed" / "x.json").write_text("{}")
    plugin = make_plugin(confdir, confdir.spool)
    result = plugin.poll(["A", "NEW"])
    assert result["A"] == WMSQueueInfo(ready=3, running=1)
    assert result["NEW"] == WMSQueueInfo()
    assert (confdir.spool / "NEW").is_dir()


def test_unreadable_queue_directory_is_unknown_not_zero(confdir):
    confdir.work("A", 2)
    confdir.spool.joinpath("B").write_text("not a directory")
    confdir.work("C", 1)
    shutil.rmtree(confdir.spool / "C")
    confdir.spool.joinpath("C").mkdir()
    confdir.spool.joinpath("C", "claimed").write_text("a file where a directory should be")
    plugin = make_plugin(confdir, confdir.spool)
    result = plugin.poll(["A", "B", "C"])
    assert result["A"] == WMSQueueInfo(ready=2)
    assert isinstance(result["B"], Unknown) and "cannot read spool directory" in result["B"].reason
    assert isinstance(result["C"], Unknown) and "claimed" in result["C"].reason


def test_unreadable_spool_root_fails_the_poll(confdir, tmp_path):
    root = tmp_path / "spoolfile"
    root.write_text("x")
    plugin = make_plugin(confdir, root)
    with pytest.raises(OSError, match="cannot read spool directory"):
        plugin.poll(["A", "B"])


def test_factory_local_queue_with_broken_spool_submits_zero_then_resumes(confdir):
    confdir.write(local_queue("LQ", confdir.spool, executable="/bin/true")
                  + local_queue("OTHER", confdir.spool, executable="/bin/true"))
    confdir.work("LQ", 2)
    confdir.work("OTHER", 1)
    config = confdir.load()
    factory = Factory(config)
    records = []
    factory.listeners.append(lambda queue, record: records.append((queue.name, record)))
    factory.start()


    def cycles(name, since):
        return [r for n, r in list(records) if n == name and r.started >= since]

    try:
        wait_for(lambda: any(r.submitted > 0 for r in cycles("LQ", 0)), what="a first submission")
        broke = time.time()
        shutil.rmtree(confdir.spool / "LQ")
        (confdir.spool / "LQ").write_text("the spool directory became a file")
        wait_for(lambda: len([r for r in cycles("LQ", broke) if r.wms is None]) >= 3, what="unknown cycles")
        unknown = [r for r in cycles("LQ", broke) if r.wms is None]
        assert all(r.submitted == 0 for r in unknown)
        assert any("cannot read spool directory" in r.message for r in unknown)
        # the other queue on the same spool keeps its known status
        wait_for(lambda: sum(r.wms is not None for r in cycles("OTHER", broke)) >= 3, what="other queue cycles")
        fixed = time.time()
        (confdir.spool / "LQ").unlink()
        confdir.work("LQ", 2)
        wait_for(lambda: any(r.submitted > 0 for r in cycles("LQ", fixed)), what="submissions again")
    finally:
        factory.stop(timeout=10)
