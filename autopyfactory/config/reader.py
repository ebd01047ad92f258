"""Reading config files and filling sections, collecting every problem on the way.

configparser lower-cases key names, so every lookup here is case-insensitive;
key tables map the lower-case name to ``(canonical spelling, Key)`` and the
canonical spelling is what messages show.
"""

from __future__ import annotations

import configparser
import difflib
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import autopyfactory.config.remote as remote
from autopyfactory.settings import MISSING, Key, Problem, Section

KeyTable = dict[str, tuple[str, Key]]


@dataclass(frozen=True)
class Fetching:
    """How remote files are fetched: [Factory] config.remote.* and what cancels a fetch."""

    deadline: float = remote.DEFAULT_DEADLINE
    max_bytes: int = remote.DEFAULT_MAX_BYTES
    cachedir: str = ""  # "": no cached copy
    cancel: threading.Event | None = None


def lower_table(table: dict[str, Key], prefix: str = "") -> KeyTable:
    """``{lower-case full name: (full name, Key)}`` of a key table, names prefixed with ``prefix``."""
    return {f"{prefix}{name}".lower(): (f"{prefix}{name}", key) for name, key in table.items()}


def closest(key: str, known: Iterable[str]) -> str:
    """`` (closest known key: ...)`` for a misspelt key, or nothing."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (closest known key: {match[0]})" if match else ""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``; did you mean X?`` for a misspelt plugin name (compared case-insensitively), or nothing."""
    spelling = {item.lower(): item for item in known}
    match = difflib.get_close_matches(name.lower(), list(spelling), n=1, cutoff=0.6)
    return f"; did you mean {spelling[match[0]]}?" if match else ""


def origin(parser: configparser.ConfigParser, section: str, key: str) -> str:
    """Section a key is written in: the section itself or DEFAULT."""
    own = parser._sections.get(section, {})  # type: ignore[attr-defined]
    return section if key in own else "DEFAULT"


_SECTION = re.compile(r"\[(?P<name>[^]]+)\]")
_OPTION = re.compile(r"(?P<key>[^\s=:;#\[][^=:]*?)\s*[=:]")


def key_lines(text: str) -> dict[tuple[str, str], int]:
    """(section, lower-case key) -> line number where it is first set, as configparser reads it."""
    lines: dict[tuple[str, str], int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line[0].isspace():  # blank, or a continuation line
            continue
        header = _SECTION.match(line)
        if header:
            section = header.group("name")
            continue
        option = _OPTION.match(line)
        if option:
            lines.setdefault((section, option.group("key").strip().lower()), number)
    return lines


class Reader:
    """Reads files and fills sections; every problem is collected, none stops the reading."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.stale: list[str] = []  # remote files read from their last good copy: why
        self._once: dict[object, tuple[int, str, int]] = {}  # kind -> (index, message, sections)
        self._lines: dict[str, dict[tuple[str, str], int]] = {}  # source -> (section, key) -> line

    def error(self, file: str, section: str, key: str, message: str) -> None:
        problem = Problem(file, section, key, message)
        if problem not in self.problems:
            self.problems.append(problem)

    def warn(self, file: str, section: str, key: str, message: str) -> None:
        problem = Problem(file, section, key, message, "warning")
        if problem not in self.problems:
            self.problems.append(problem)

    def warn_once(self, file: str, section: str, key: str, message: str, kind: object = None) -> None:
        """One warning per kind (default: the key and message), however often it is seen:
        the first place, then how many times in all."""
        kind = kind if kind is not None else (key, message)
        seen = self._once.get(kind)
        if seen is None:
            self._once[kind] = (len(self.problems), message, 1)
            self.problems.append(Problem(file, section, key, message, "warning"))
            return
        index, first, count = seen
        self._once[kind] = (index, first, count + 1)
        self.problems[index] = replace(self.problems[index], message=f"{first} ({count + 1} times)")

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    # ------------------------------------------------------------ parsing
    def parse_text(self, text: str, source: str) -> configparser.ConfigParser | None:
        parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
        try:
            parser.read_string(text, source=source)
        except configparser.DuplicateOptionError as exc:
            self.error(source, exc.section, exc.option, f"set twice in the section (line {exc.lineno})")
            return None
        except configparser.DuplicateSectionError as exc:
            self.error(source, exc.section, "", f"section defined twice (line {exc.lineno})")
            return None
        except configparser.MissingSectionHeaderError as exc:
            self.error(source, "", "", f"cannot parse line {exc.lineno}: {exc.line.strip()!r} "
                       "comes before any [section]")
            return None
        except configparser.ParsingError as exc:
            lines = ", ".join(f"line {n}: {line.strip()!r}" for n, line in exc.errors)
            self.error(source, "", "", f"cannot parse ({lines}; expected key = value)")
            return None
        except configparser.Error as exc:
            self.error(source, "", "", f"cannot parse: {' '.join(str(exc).split())}")
            return None
        self._lines[source] = key_lines(text)
        return parser

    def line(self, source: str, section: str, key: str) -> int | None:
        """The line of ``source`` where ``key`` is set in ``[section]``, if known."""
        return self._lines.get(source, {}).get((section, key.lower()))

    def parse_file(self, path: str) -> configparser.ConfigParser | None:
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            self.error(path, "", "", f"cannot read: {exc.strerror or exc}")
            return None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
            self.error(path, "", "", f"not UTF-8 text: byte {exc.start} (line {line}, column {column}) "
                       f"is {data[exc.start]:#04x} (expected a UTF-8 text file)")
            return None
        return self.parse_text(text, path)

    def parse_url(self, url: str, fetching: Fetching) -> configparser.ConfigParser | None:
        """A remote file, fetched within its deadline and size (config/remote.py); when the URL
        fails, its last good copy with a warning (kept in ``stale``); else an error."""
        def parses(text: str) -> None:  # only a file that parses becomes the last good copy
            try:
                configparser.ConfigParser(interpolation=None).read_string(text, source=url)
            except configparser.Error as exc:
                raise ValueError(f"not a valid configuration file: {' '.join(str(exc).split())}") from None

        cache = remote.cache_file(fetching.cachedir, url) if fetching.cachedir else None
        try:
            got = remote.fetch(url, fetching.deadline, fetching.max_bytes, cache, check=parses,
                               cancel=fetching.cancel)
        except remote.FetchError as exc:
            self.error(url, "", "", f"cannot fetch: {exc}")
            return None
        if got.warning:
            self.warn(url, "", "", got.warning)
            self.stale.append(got.warning)
        return self.parse_text(got.text, url)

    def items(self, parser: configparser.ConfigParser, source: str, section: str) -> dict[str, str]:
        """Interpolated values of a section; a broken interpolation is a problem."""
        values = {}
        for key in parser[section]:
            try:
                values[key] = parser.get(section, key)
            except configparser.Error as exc:
                message = " ".join(str(exc).split())
                self.error(source, section, key, f"bad %(...)s interpolation: {message}")
        return values

    # ------------------------------------------------------------ values
    def typed(self, source: str, where: str, name: str, key: Key, raw: str, basedir: str) -> Any:
        """``key.parse(raw)``, or MISSING after reporting why it is not a valid value."""
        try:
            return key.parse(raw, basedir)
        except ValueError as exc:
            self.error(source, where, name, str(exc))
            return MISSING

    def fill(
        self,
        section: Section,
        table: KeyTable,
        basedir: str,
        where: Callable[[str], str] | None = None,
        missing: str = "required key missing",
        enforce: Callable[[], bool] = lambda: True,
    ) -> None:
        """Set every key of ``table`` in ``section.values``: the typed value of ``section.raw``,
        else the key's default. A required key that is not set is left out and, while
        ``enforce()`` holds, reported with ``missing``. ``where(key)`` names the section a
        bad value is written in (DEFAULT or the section itself)."""
        for lower, (name, key) in table.items():
            if lower in section.raw:
                at = where(lower) if where is not None else section.name
                value = self.typed(section.source, at, name, key, section.raw[lower], basedir)
                if value is not MISSING:
                    section.values[lower] = value
            elif not key.required:
                section.values[lower] = key.default
            elif enforce():
                self.error(section.source, section.name, name, missing)
