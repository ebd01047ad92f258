"""Log cleaner: keeps ``<baseLogDir>/<YYYY-MM-DD>/<queue>/`` from filling the disk.

Two rules, applied every ``interval`` seconds:

- age: a queue's directory of a day older than ``cleanlogs.keepdays`` days
  (the queue's own ``cleanlogs.keepdays`` when set, else [Factory]'s) goes;
  0 keeps them for ever;
- disk: while the file system holding baseLogDir is fuller than
  ``cleanlogs.maxdiskpercent``, the oldest pilot log files go first (files
  changed in the last ``active_seconds`` are left alone: their pilot may
  still be writing).

Only real directories and files under baseLogDir are ever removed: symbolic
links are neither followed nor deleted, and names that are not dates are
left alone. Every removal is logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")

# (total, used, free) in bytes, like shutil.disk_usage
DiskUsage = Callable[[str], Any]


class LogCleaner:
    name = "cleaner"

    def __init__(self, factory: FactoryView, interval: float = 300.0,
                 disk_usage: DiskUsage = shutil.disk_usage, active_seconds: float = 3600.0,
                 today: Callable[[], dt.date] | None = None):
        self.factory = factory
        self.interval = interval
        self.disk_usage = disk_usage
        self.active_seconds = active_seconds
        self.today = today or (lambda: dt.datetime.now(dt.UTC).date())
        self.last: dict | None = None  # summary of the last pass, for the status page
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------- service
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="cleaner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.clean()
            except Exception:
                log.exception("log cleaner pass failed")
            self._stop.wait(self.interval)

    # -------------------------------------------------------------- one pass
    @property
    def root(self) -> str:
        return os.path.realpath(self.factory.config.get("baseLogDir"))

    def keepdays(self, queue: str) -> int:
        config = self.factory.config
        qconfig = config.queues.get(queue)
        if qconfig is not None and qconfig.values.get("cleanlogs.keepdays") is not None:
            return int(qconfig.values["cleanlogs.keepdays"])
        return int(config.get("cleanlogs.keepdays"))

    def clean(self) -> dict:
        """One pass of both rules; returns (and keeps in ``last``) what was removed."""
        root = self.root
        summary: dict = {"time": time.time(), "root": root, "removed_dirs": [], "removed_files": 0,
                         "freed_bytes": 0, "disk_percent": None, "errors": []}
        if not os.path.isdir(root):
            self.last = summary
            return summary
        self._clean_by_age(root, summary)
        self._clean_by_disk(root, summary)
        self.last = summary
        return summary

    def _date_dirs(self, root: str) -> list[tuple[dt.date, str]]:
        """(date, path) of the real ``YYYY-MM-DD`` directories directly under root, oldest first."""
        found = []
        with os.scandir(root) as entries:
            for entry in entries:
                if not DATE_DIR.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                    continue
                try:
                    day = dt.date.fromisoformat(entry.name)
                except ValueError:
                    continue
                found.append((day, entry.path))
        return sorted(found)

    def _clean_by_age(self, root: str, summary: dict) -> None:
        today = self.today()
        for day, path in self._date_dirs(root):
            age = (today - day).days
            with os.scandir(path) as entries:
                queues = [e for e in entries if e.is_dir(follow_symlinks=False)]
            for entry in queues:
                keep = self.keepdays(entry.name)
                if keep > 0 and age > keep:
                    freed = _tree_size(entry.path)
                    if self._remove_tree(entry.path, summary):
                        summary["freed_bytes"] += freed
                        log.info("log cleaner: removed %s (%d days old, keepdays %d, %d bytes)",
                                 entry.path, age, keep, freed)
            if age > 0:  # today's directory is where pilots are being written
                self._remove_if_empty(path)

    def _percent(self, root: str) -> float:
        usage = self.disk_usage(root)
        total, used = usage[0], usage[1]
        return 100.0 * used / total if total else 0.0

    def _clean_by_disk(self, root: str, summary: dict) -> None:
        limit = float(self.factory.config.get("cleanlogs.maxdiskpercent"))
        percent = self._percent(root)
        summary["disk_percent"] = percent
        if percent <= limit:
            return
        log.warning("log cleaner: %s is %.1f%% full (cleanlogs.maxdiskpercent %g): removing the oldest pilot logs",
                    root, percent, limit)
        newest_allowed = time.time() - self.active_seconds
        removed = freed = 0
        for mtime, size, path in self._pilot_files(root):
            if mtime > newest_allowed:
                break
            try:
                os.unlink(path)
            except OSError as exc:
                summary["errors"].append(f"{path}: {exc.strerror or exc}")
                continue
            removed += 1
            freed += size
            log.info("log cleaner: removed %s (disk %.1f%% > %g%%)", path, percent, limit)
            percent = self._percent(root)
            if percent <= limit:
                break
        today = self.today()
        for day, path in self._date_dirs(root):
            if day >= today:
                continue
            with os.scandir(path) as entries:
                for entry in list(entries):
                    if entry.is_dir(follow_symlinks=False):
                        self._remove_if_empty(entry.path)
            self._remove_if_empty(path)
        summary["removed_files"] += removed
        summary["freed_bytes"] += freed
        summary["disk_percent"] = percent
        if percent > limit:
            log.warning("log cleaner: %s still %.1f%% full after removing %d file(s): the rest is recent "
                        "or not pilot logs", root, percent, removed)
        else:
            log.info("log cleaner: removed %d file(s), %d bytes; disk now %.1f%%", removed, freed, percent)

    def _pilot_files(self, root: str) -> list[tuple[float, int, str]]:
        """(mtime, size, path) of the regular files in <date>/<queue>/ directories, oldest first."""
        files = []
        for _, day_path in self._date_dirs(root):
            for dirpath, _dirnames, filenames in os.walk(day_path, followlinks=False):
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        files.append((st.st_mtime, st.st_size, path))
        return sorted(files)

    def _remove_tree(self, path: str, summary: dict) -> bool:
        errors: list[str] = []

        def onerror(func, failed, exc_info):
            errors.append(f"{failed}: {exc_info[1]}")

        # rmtree never follows symbolic links inside the tree: it unlinks them
        shutil.rmtree(path, onerror=onerror)
        if errors:
            summary["errors"].extend(errors)
            log.warning("log cleaner: could not remove all of %s: %s", path, "; ".join(errors[:3]))
            return False
        summary["removed_dirs"].append(path)
        return True

    def _remove_if_empty(self, path: str) -> None:
        try:
            os.rmdir(path)
        except OSError:
            pass  # not empty (or already gone): fine


def _tree_size(path: str) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path, followlinks=False):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
