"""Log cleaner: by age (with a per-queue override) and by disk percentage, never outside baseLogDir."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from types import SimpleNamespace

from autopyfactory.factory import Factory
from autopyfactory.services.cleaner import LogCleaner
from tests.conftest import local_queue, wait_for

TODAY = dt.date(2026, 3, 20)


def day(n: int) -> str:
    return (TODAY - dt.timedelta(days=n)).isoformat()


def pilot_logs(base: Path, days_ago: int, queue: str, count: int = 2, size: int = 100) -> Path:
    directory = base / day(days_ago) / queue
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"1.{i}.out").write_bytes(b"x" * size)
    return directory


def cleaner_for(confdir, **kwargs) -> LogCleaner:
    config = confdir.load()
    return LogCleaner(SimpleNamespace(config=config), today=lambda: TODAY, **kwargs)


def test_cleaner_is_a_factory_service(confdir):
    confdir.write(local_queue("Q", confdir.spool))
    config = confdir.load()
    factory = Factory(config)
    assert any(isinstance(s, LogCleaner) for s in factory.services)
    assert any(isinstance(s, LogCleaner) for s in factory.services)


def test_age_rule_with_per_queue_override(confdir, tmp_path, caplog):
    confdir.write(local_queue("SHORT", confdir.spool) + local_queue("LONG", confdir.spool, **{"cleanlogs.keepdays": "10"}),
                  factory="cleanlogs.keepdays = 3\ncleanlogs.maxdiskpercent = 100\n")
    logs = confdir.logs
    old_short = pilot_logs(logs, 5, "SHORT")
    old_long = pilot_logs(logs, 5, "LONG")
    older_long = pilot_logs(logs, 11, "LONG")
    edge_short = pilot_logs(logs, 3, "SHORT")  # exactly keepdays old: kept
    unknown_queue = pilot_logs(logs, 4, "RETIRED")  # not configured any more: factory default
    today_short = pilot_logs(logs, 0, "SHORT")
    not_a_date = logs / "notes"
    not_a_date.mkdir()
    (not_a_date / "keep.txt").write_text("operator notes")

    with caplog.at_level("INFO", logger="autopyfactory.services.cleaner"):
        summary = cleaner_for(confdir).clean()

    assert f"removed {old_short} (5 days old, keepdays 3, 200 bytes)" in caplog.text
    assert not old_short.exists()
    assert old_long.exists()
    assert not older_long.exists()
    assert not (logs / day(11)).exists()  # emptied date directory goes too
    assert edge_short.exists()
    assert not unknown_queue.exists()
    assert today_short.exists()
    assert (not_a_date / "keep.txt").exists()
    assert sorted(summary["removed_dirs"]) == sorted(str(p) for p in (old_short, older_long, unknown_queue))
    assert summary["freed_bytes"] == 600


def test_age_rule_never_follows_symlinks(confdir, tmp_path):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 1\ncleanlogs.maxdiskpercent = 100\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.out").write_text("not ours")
    logs = confdir.logs
    old = pilot_logs(logs, 30, "Q")
    os.symlink(outside / "precious.out", old / "link.out")  # a link inside an old queue directory
    os.symlink(outside, logs / day(40))  # a whole "date" directory that is a link
    (logs / day(30) / "LINKQ").symlink_to(outside)  # a "queue" directory that is a link

    cleaner_for(confdir).clean()

    assert not old.exists()
    assert (outside / "precious.out").read_text() == "not ours"
    assert (logs / day(40)).is_symlink()


def test_zero_keepdays_keeps_everything(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 0\ncleanlogs.maxdiskpercent = 100\n")
    old = pilot_logs(confdir.logs, 400, "Q")
    cleaner_for(confdir).clean()
    assert old.exists()


class FakeDisk:
    """A file system whose usage is the bytes under ``root`` plus a fixed amount of other data."""

    def __init__(self, root: Path, total: int, other: int = 0):
        self.root, self.total, self.other = root, total, other
        self.calls = 0

    def __call__(self, path: str):
        self.calls += 1
        assert os.path.realpath(path) == os.path.realpath(self.root)
        used = self.other + sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file() and not f.is_symlink())
        return (self.total, used, self.total - used)


def test_disk_rule_removes_oldest_pilot_logs_until_under_the_limit(confdir, tmp_path):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 0\ncleanlogs.maxdiskpercent = 50\n")
    logs = confdir.logs
    now = time.time()
    files = []
    for i in range(10):  # 10 files of 100 bytes, i = 0 is the oldest
        directory = logs / day(10 - i) / "Q"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{i}.out"
        path.write_bytes(b"x" * 100)
        os.utime(path, (now - 86400 * (10 - i), now - 86400 * (10 - i)))
        files.append(path)
    recent = logs / day(0) / "Q" / "running.out"  # a pilot still writing
    recent.parent.mkdir(parents=True)
    recent.write_bytes(b"x" * 100)
    outside = tmp_path / "outside.out"
    outside.write_bytes(b"x" * 100)
    os.symlink(outside, logs / day(10) / "Q" / "link.out")
    disk = FakeDisk(logs, total=2000, other=300)  # 300 + 1100 = 70 % used

    summary = cleaner_for(confdir, disk_usage=disk).clean()

    # 300 + 1100 - 100 * k <= 1000  ->  k = 4 oldest files removed, nothing more
    assert [p.exists() for p in files] == [False] * 4 + [True] * 6
    assert recent.exists() and outside.exists()
    assert summary["removed_files"] == 4 and summary["freed_bytes"] == 400
    assert summary["disk_percent"] <= 50
    assert not (logs / day(10 - 1)).exists()  # emptied old directories are tidied away


def test_disk_rule_leaves_recent_files_even_when_still_over(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 0\ncleanlogs.maxdiskpercent = 10\n")
    fresh = pilot_logs(confdir.logs, 0, "Q", count=3)
    disk = FakeDisk(confdir.logs, total=1000, other=900)
    summary = cleaner_for(confdir, disk_usage=disk).clean()
    assert fresh.exists() and len(list(fresh.iterdir())) == 3
    assert summary["removed_files"] == 0 and summary["disk_percent"] > 10


def test_disk_rule_does_nothing_under_the_limit(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 0\ncleanlogs.maxdiskpercent = 90\n")
    old = pilot_logs(confdir.logs, 100, "Q")
    for f in old.iterdir():
        os.utime(f, (0, 0))
    disk = FakeDisk(confdir.logs, total=10_000)
    cleaner_for(confdir, disk_usage=disk).clean()
    assert len(list(old.iterdir())) == 2


def test_cleaner_thread_runs_and_stops(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="cleanlogs.keepdays = 1\n")
    old = pilot_logs(confdir.logs, 9, "Q")
    cleaner = cleaner_for(confdir, interval=0.1)
    cleaner.start()
    wait_for(lambda: not old.exists(), what="the old pilot logs to go")
    cleaner.stop()
    assert cleaner.last is not None
    assert not cleaner._thread.is_alive()
