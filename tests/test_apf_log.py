"""``apf log`` when the factory logs to the journal: the API names the unit, apf runs journalctl -u UNIT.

The factory runs in this process with its log handler as the daemon sets it
under systemd; ``journalctl`` is the host's own where it can answer (no entries
here: this host keeps no journal) and a stand-in on PATH that prints what a
journal would and records the argument list it was given.
"""

from __future__ import annotations

import logging
import shutil
import sys

import pytest
import requests

from autopyfactory import journal
from autopyfactory.cli import apf
from tests.conftest import local_queue
from tests.web_support import TOKEN, start_factory

STAND_IN = """#!/bin/sh
for arg in "$@"; do printf "%s\\n" "$arg"; done > "{argv}"
{body}
"""


def apf_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = apf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def stand_in(tmp_path, monkeypatch, body: str):
    """A journalctl first on PATH; returns the file its argument list goes to."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    argv = tmp_path / "journalctl.argv"
    script = bindir / "journalctl"
    script.write_text(STAND_IN.format(argv=argv, body=body))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    return argv


@pytest.fixture
def journal_handler():
    """The root logger as the daemon sets it when stderr is the journal."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(journal.HANDLER_NAME)
    handler.setFormatter(journal.JournalFormatter())
    root.handlers[:] = [handler]
    yield handler
    root.handlers[:] = saved


def test_the_unit_is_read_from_the_cgroup(tmp_path):
    v2 = tmp_path / "v2"
    v2.write_text("0::/system.slice/autopyfactory.service\n")
    hybrid = tmp_path / "hybrid"
    hybrid.write_text("12:memory:/system.slice/other.service\n1:name=systemd:/system.slice/apf@atlas.service\n"
                      "0::/system.slice/apf@atlas.service\n")
    outside = tmp_path / "outside"
    outside.write_text("0::/user.slice/user-0.slice/session-1.scope\n")
    assert journal.own_unit(str(v2)) == "autopyfactory.service"
    assert journal.own_unit(str(hybrid)) == "apf@atlas.service"
    assert journal.own_unit(str(outside)) is None and journal.own_unit(str(tmp_path / "none")) is None


def test_apf_log_reads_the_journal_of_the_unit_the_api_names(confdir, tmp_path, monkeypatch, capsys,
                                                             journal_handler):
    run = start_factory(confdir, {"Q": 0})
    try:
        answer = requests.get(run.url + "/api/v1/admin/log?lines=5", timeout=30,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 409
        said = answer.json()
        assert said["log_target"] == "journal" and said["unit"] == "autopyfactory.service"  # not in a unit here
        assert said["command"] == ["journalctl", "--no-pager", "-u", "autopyfactory.service", "-n", "5"]
        assert "read it with journalctl --no-pager -u autopyfactory.service -n 5" in said["error"]

        argv = stand_in(tmp_path, monkeypatch, 'echo "Dec 06 07:30:00 host autopyfactory[42]: one"\n'
                                               'echo "Dec 06 07:30:01 host autopyfactory[42]: two"')
        conf = str(confdir.root / "factory.conf")
        code, out, err = apf_run(capsys, "log", "-n", "5", "--conf", conf)
        assert code == 0, err
        assert out.splitlines() == ["Dec 06 07:30:00 host autopyfactory[42]: one",
                                    "Dec 06 07:30:01 host autopyfactory[42]: two"]
        assert argv.read_text().splitlines() == ["--no-pager", "-u", "autopyfactory.service", "-n", "5"]
        assert "apf log: from the journal: journalctl --no-pager -u autopyfactory.service -n 5" in err
        # another unit name (two factories on a host): --unit
        assert apf_run(capsys, "log", "--unit", "apf@cms.service", "--conf", conf)[0] == 0
        assert argv.read_text().splitlines()[2] == "apf@cms.service"
        # journalctl failing: its reason and the command, exit 1
        stand_in(tmp_path, monkeypatch, 'echo "Failed to open journal" >&2; exit 1')
        code, _, err = apf_run(capsys, "log", "--conf", conf)
        assert code == 1 and "journalctl --no-pager -u autopyfactory.service -n 100 exited 1: Failed to open" in err
    finally:
        run.stop()


def test_without_the_web_server_apf_log_reads_the_journal_here(confdir, tmp_path, monkeypatch, capsys):
    conf = str(confdir.write(local_queue("Q", confdir.spool)))
    if shutil.which("journalctl"):  # the host's own: this host keeps no journal, so no entries
        code, out, err = apf_run(capsys, "log", "--conf", conf)
        assert code == 0 and out == ""
        assert "no journal lines for autopyfactory.service" in err and "APF_LOG" in err
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = apf_run(capsys, "log", "--conf", conf)
    assert code == 1 and "no journalctl on this host" in err
    assert "journalctl --no-pager -u autopyfactory.service -n 100 on the factory's host" in err
