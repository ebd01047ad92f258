"""Pilot logs under baseLogDir: files, directory indexes, byte ranges.

Nothing outside baseLogDir is ever served. A request path is split into
components; ``..``, ``.``, NUL bytes and backslashes are refused outright, the
rest is resolved with every symlink followed and must still lie inside
baseLogDir. After opening, the file's descriptor is checked again through
/proc (a symlink swapped in between the check and the open gains nothing).
Every refusal is a plain 404: the client learns nothing about the outside.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from urllib.parse import quote

from autopyfactory.timefmt import utc

# APF 2.4's log server served baseLogDir at its root: its links are <baseLogDirUrl>/<YYYY-MM-DD>/<queue>/<file>
APF24_LINK = re.compile(r"^/[0-9]{4}-[0-9]{2}-[0-9]{2}(/|$)")
TEXT_SUFFIXES = (".out", ".err", ".log", ".jdl", ".txt", ".json", ".sub", ".sh")
CHUNK = 256 * 1024
DAY = 86400.0
LOOK_BACK_DAYS = 3  # a pilot's logs are in the directory of the day it was submitted


class NotFound(Exception):
    """The path does not name something servable under baseLogDir."""


@dataclass
class Entry:
    name: str
    is_dir: bool
    size: int
    mtime: float


def _inside(base: str, path: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


class LogFiles:
    def __init__(self, base: str):
        self.base_configured = base

    @property
    def base(self) -> str:
        # resolved each time: baseLogDir may be created after the server starts
        return os.path.realpath(self.base_configured)

    def resolve(self, relative: str) -> str:
        """Real path of ``relative`` (already URL-decoded) under baseLogDir, or NotFound."""
        if "\x00" in relative or "\\" in relative:
            raise NotFound(relative)
        parts = [p for p in relative.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise NotFound(relative)
        base = self.base
        real = os.path.realpath(os.path.join(base, *parts))
        if not _inside(base, real) or not os.path.exists(real):
            raise NotFound(relative)
        return real

    def open(self, real: str):
        """Open a regular file found by ``resolve``; checked again once open."""
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOENT, errno.EACCES, errno.EISDIR):
                raise NotFound(real) from None
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise NotFound(real)
            try:
                opened = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                opened = real
            if not _inside(self.base, opened):
                raise NotFound(real)
            return os.fdopen(fd, "rb"), info
        except BaseException:
            os.close(fd)
            raise

    def pilot_files(self, queue: str, jobid: str, end: float) -> list[tuple[str, str]]:
        """(file name, URL path) of the logs a pilot left under ``<baseLogDir>/<date>/<queue>/``.

        Every submit plugin writes ``<cluster>.<proc>.out`` and ``.err`` there
        (Slurm: ``<arrayjob>.<task>``, its id being ``<arrayjob>_<task>``), and
        HTCondor its user log ``<cluster>.log``. The day is the submission's: the
        days from the pilot's end back over ``LOOK_BACK_DAYS`` are tried, newest first.
        """
        stem = jobid.replace("_", ".")
        names = (f"{stem}.out", f"{stem}.err", f"{stem.split('.')[0]}.log")
        for back in range(LOOK_BACK_DAYS):
            day = utc(end - back * DAY, "%Y-%m-%d")
            if day is None:  # an end time that is no time (a damaged store row): no logs to show
                return []
            found = []
            for name in names:
                try:
                    real = self.resolve(f"/{day}/{queue}/{name}")
                except NotFound:
                    continue
                if os.path.isfile(real):
                    found.append((name, "/logs/" + "/".join(quote(p) for p in (day, queue, name))))
            if found:
                return found
        return []

    def listing(self, real: str) -> list[Entry]:
        """Entries of a directory under baseLogDir; links leading outside are left out."""
        base = self.base
        entries = []
        try:
            names = os.listdir(real)
        except OSError:
            raise NotFound(real) from None
        for name in names:
            path = os.path.join(real, name)
            target = os.path.realpath(path)
            if not _inside(base, target):
                continue
            try:
                info = os.stat(target)
            except OSError:
                continue
            entries.append(Entry(name, stat.S_ISDIR(info.st_mode), info.st_size, info.st_mtime))
        entries.sort(key=lambda e: (not e.is_dir, e.name))
        return entries


def content_type(name: str) -> str:
    """Pilot logs are text; anything else is bytes (never HTML from a pilot)."""
    if name.endswith(TEXT_SUFFIXES):
        return "text/plain; charset=utf-8"
    return "application/octet-stream"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """``Range: bytes=a-b`` -> (start, end inclusive); None = send everything;
    "unsatisfiable" for a range past the end. Several ranges are answered whole."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[len("bytes="):].strip()
    if "," in spec:
        return None
    first, sep, last = spec.partition("-")
    if not sep:
        return None
    try:
        if first == "":
            if not last:
                return None
            length = int(last)
            if length <= 0:
                return "unsatisfiable"
            return (max(0, size - length), size - 1) if size else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0:
        return None
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, min(end, size - 1)


def file_chunks(handle, start: int, length: int):
    """Iterate ``length`` bytes of ``handle`` from ``start``, then close it."""
    try:
        handle.seek(start)
        remain = length
        while remain > 0:
            block = handle.read(min(CHUNK, remain))
            if not block:
                break
            remain -= len(block)
            yield block
    finally:
        handle.close()

