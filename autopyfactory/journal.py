"""The systemd journal: how the daemon logs to it, and how ``apf log`` reads it back.

Under the shipped unit the daemon's stderr is the journal (systemd sets
``$JOURNAL_STREAM`` to that stream's ``<device>:<inode>``). Each line then
starts with ``<N>``, its syslog priority (the sd-daemon(3) convention), so
journald files it at that priority and ``journalctl -p warning`` filters.

``apf log`` cannot have such a log from the factory's admin API (the
journal is not a file): the API names the unit, and ``apf`` runs
``journalctl -u <unit>`` itself, with an argument list (never a shell).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

HANDLER_NAME = "journal"  # the name of the daemon's log handler when it writes to the journal
DEFAULT_UNIT = "autopyfactory.service"
READ_TIMEOUT = 30.0


def stderr_is_journal() -> bool:
    """Whether stderr is connected to the journal: ``$JOURNAL_STREAM`` names that stream (systemd.exec(5));
    a child whose stderr was redirected may inherit the variable, not the stream."""
    try:
        device, inode = (int(part) for part in os.environ.get("JOURNAL_STREAM", "").split(":"))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """Each line starts with ``<N>``, its syslog priority: journald files it at that priority.
    Every line of a multi-line message (a traceback) carries it, so none is filed as info."""

    @staticmethod
    def priority(levelno: int) -> int:
        for level, priority in ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6)):
            if levelno >= level:
                return priority
        return 7  # debug

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{self.priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def own_unit(cgroup_file: str = "/proc/self/cgroup") -> str | None:
    """The systemd service this process runs in (from its cgroup), or None outside one."""
    try:
        with open(cgroup_file, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:  # "0::/system.slice/autopyfactory.service" (v2), "1:name=systemd:/system.slice/…" (v1)
        hierarchy, _, path = line.partition(":")[2].partition(":")
        if hierarchy not in ("", "name=systemd"):
            continue
        units = [part for part in path.split("/") if part.endswith(".service")]
        if units:
            return units[-1]
    return None


def command(unit: str, lines: int) -> list[str]:
    """The journalctl command that shows the unit's last ``lines`` lines."""
    return ["journalctl", "--no-pager", "-u", unit, "-n", str(lines)]


def shown(argv: list[str]) -> str:
    return " ".join(argv)


class JournalUnreadable(Exception):
    """The journal could not be read here; the message says what to run instead."""


def read(unit: str, lines: int) -> tuple[list[str], str]:
    """(the unit's last ``lines`` journal lines, journalctl's own remarks on stderr), or JournalUnreadable."""
    argv = command(unit, lines)
    if shutil.which(argv[0]) is None:
        raise JournalUnreadable(f"no journalctl on this host: read the journal of {unit} where it is kept "
                                f"({shown(argv)} on the factory's host)")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=READ_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JournalUnreadable(f"{shown(argv)} failed: {exc}") from None
    if done.returncode != 0:
        raise JournalUnreadable(f"{shown(argv)} exited {done.returncode}: {done.stderr.strip()[:500]}")
    found = [line for line in done.stdout.splitlines() if line != "-- No entries --"]
    return found, done.stderr.strip()
