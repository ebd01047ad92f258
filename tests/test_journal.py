"""Logging to the journal: every line carries its syslog priority ``<N>`` (sd-daemon(3)), so that
``journalctl -p warning`` filters; only when stderr really is the stream ``$JOURNAL_STREAM`` names."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from autopyfactory import journal as journald
from autopyfactory.cli import daemon

# syslog priorities journald files the lines at (what journalctl -p compares)
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2}


@pytest.fixture
def journal_stderr(tmp_path, monkeypatch):
    """``install()``: stderr as a file that $JOURNAL_STREAM names (as systemd sets it for the journal's
    stream); called in the test itself, since pytest sets its own sys.stderr between setup and call."""
    path = tmp_path / "journal-stream"
    stream = open(path, "w", buffering=1)  # noqa: SIM115
    info = os.fstat(stream.fileno())
    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def install():
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        monkeypatch.setattr(sys, "stderr", stream)
        return path

    yield install
    root.handlers[:], level = saved
    root.setLevel(level)
    stream.close()


def test_each_level_carries_its_syslog_priority_when_stderr_is_the_journal(journal_stderr):
    journal = journal_stderr()
    daemon.setup_logging("stdout", "debug")
    log = logging.getLogger("autopyfactory.test")
    for level in PRIORITIES:
        getattr(log, level)("a %s line", level)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("a failure\nover two lines")
    lines = journal.read_text().splitlines()
    for level, priority in PRIORITIES.items():
        assert f"<{priority}>{level.upper()} [MainThread] autopyfactory.test: a {level} line" in lines
    failure = lines[lines.index("<3>ERROR [MainThread] autopyfactory.test: a failure"):]
    assert failure[1] == "<3>over two lines"
    assert any(line.startswith("<3>Traceback") for line in failure)
    assert failure[-1] == "<3>RuntimeError: boom"
    # journalctl -p warning keeps priorities 0..4: exactly the warning, error and critical lines, traceback included
    kept = [line for line in lines if int(line[1]) <= 4]
    assert len(kept) == 3 + len(failure) and not any("a info line" in line or "a debug line" in line for line in kept)
    assert all(line[0] == "<" and line[2] == ">" for line in lines)


def test_a_journal_stream_that_is_not_stderr_gets_no_prefix(journal_stderr, monkeypatch, capsys):
    journal = journal_stderr()
    monkeypatch.setenv("JOURNAL_STREAM", "8:1234")  # inherited, but stderr is something else
    daemon.setup_logging("stdout", "info")
    logging.getLogger("autopyfactory.test").warning("plain")
    out = capsys.readouterr().out
    assert "WARNING [MainThread] autopyfactory.test: plain" in out and not out.startswith("<")
    assert journal.read_text() == ""
    for value in ("", "garbage", "1:2:3"):
        monkeypatch.setenv("JOURNAL_STREAM", value)
        assert not journald.stderr_is_journal()
