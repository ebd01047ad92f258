"""``apf status | reload | pause | resume | loglevel`` against a running factory."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from autopyfactory.cli import apf
from autopyfactory.cli.control import factory_endpoint, format_status
from tests.conftest import wait_for
from tests.web_support import free_port, start_factory


@pytest.fixture
def control_factory(confdir):
    run = start_factory(confdir, {"ALPHA": 3, "BETA": 0})
    yield run
    run.stop()


def conf(run) -> list[str]:
    return ["--conf", str(run.confdir.root / "factory.conf")]


def apf_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = apf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_prints_a_table_of_queues(control_factory, capsys):
    wait_for(lambda: control_factory.batch.status(["ALPHA"], "test-factory")["ALPHA"].running == 2
             and control_factory.factory.queues["ALPHA"].batch_status()[0].running == 2, what="2 running pilots")
    code, out, err = apf_run(capsys, "status", *conf(control_factory))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("factory test-factory  version ")
    header = next(i for i, line in enumerate(lines) if line.startswith("QUEUE"))
    columns = lines[header].split()
    assert columns[:7] == ["QUEUE", "HEALTH", "PENDING", "RUNNING", "EXITING", "DONE1H", "FAULT1H"]
    rows = {}
    for line in lines[header + 2:]:
        if not line:
            break
        rows[line.split()[0]] = line.split()
    assert rows["ALPHA"][1] == "ok" and rows["ALPHA"][3] == "2"
    assert rows["BETA"][2:4] == ["0", "0"]
    assert any(line.startswith("ENDPOINT") for line in lines)


def test_pause_resume_and_loglevel(control_factory, capsys):
    queue = control_factory.factory.queues["BETA"]
    code, out, _ = apf_run(capsys, "pause", "BETA", *conf(control_factory))
    assert code == 0 and out.strip() == "queue BETA paused: it keeps reporting, submits nothing"
    assert queue.paused
    code, out, _ = apf_run(capsys, "status", *conf(control_factory))
    assert next(line for line in out.splitlines() if line.startswith("BETA")).split()[1] == "paused"
    code, out, _ = apf_run(capsys, "resume", "BETA", *conf(control_factory))
    assert code == 0 and out.strip() == "queue BETA active" and not queue.paused
    code, _, err = apf_run(capsys, "pause", "NOPE", *conf(control_factory))
    assert code == 1 and "404" in err and "NOPE" in err

    root = logging.getLogger()
    before = root.level
    try:
        code, out, _ = apf_run(capsys, "loglevel", "error", *conf(control_factory))
        assert code == 0 and out.strip() == "log level now error" and root.level == logging.ERROR
    finally:
        root.setLevel(before)


def test_wrong_token_is_refused(control_factory, capsys, tmp_path):
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token-at-all-xxxxxxxx")
    code, _, err = apf_run(capsys, "pause", "ALPHA", *conf(control_factory), "--token-file", str(wrong))
    assert code == 1 and "401" in err
    assert not control_factory.factory.queues["ALPHA"].paused
    code, _, err = apf_run(capsys, "pause", "ALPHA", "--url", control_factory.url)
    assert code == 2 and "admin token file" in err


def test_reload_shows_the_problems(control_factory, capsys):
    code, out, err = apf_run(capsys, "reload", *conf(control_factory))
    assert code == 0, err
    queues = control_factory.confdir.root / "queues.conf"
    text = queues.read_text()
    queues.write_text(text + "\n[BROKEN]\nwmsstatusplugin = Nowhere\n")
    try:  # a bad queue: the rest applies, the bad one is named
        code, out, err = apf_run(capsys, "reload", *conf(control_factory))
        assert code == 0, err
        assert "invalid queue: " in out and "[BROKEN] wmsstatusplugin: unknown WMS status plugin" in out
        queues.write_text("a broken line\n" + text)  # a file that cannot be parsed: refused whole
        code, out, err = apf_run(capsys, "reload", *conf(control_factory))
        assert code == 1
        assert "400" in err and "comes before any [section]" in err
    finally:
        queues.write_text(text)


def test_unreachable_factory(capsys):
    code, _, err = apf_run(capsys, "status", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 3 and "cannot reach the factory" in err


def test_endpoint_from_factory_conf(tmp_path):
    path = tmp_path / "factory.conf"
    path.write_text("[Factory]\nfactoryId = x\nlogserver.bind = 0.0.0.0\nlogserver.port = 8123\n"
                    "admin.tokenfile = secrets/admin.token\nqueueConf = missing.conf\n")
    assert factory_endpoint(str(path)) == ("http://127.0.0.1:8123", str(tmp_path / "secrets/admin.token"))
    path.write_text("[Factory]\nlogserver.port = many\n")
    with pytest.raises(Exception, match="logserver.port: not an integer"):
        factory_endpoint(str(path))


def test_format_status_with_unknown_counts():
    text = format_status({"factory_id": "f", "version": "3", "started": "s", "last_cycle": None},
                         [{"name": "Q", "health": "paused", "pending": None, "running": None, "wms": None}])
    row = text.splitlines()[-1].split()
    assert row[:4] == ["Q", "paused", "?", "?"]


def test_apf_command_line(control_factory):
    """The installed entry point, as an operator runs it."""
    apf_bin = os.path.join(os.path.dirname(sys.executable), "apf")
    answer = subprocess.run([apf_bin, "status", *conf(control_factory)], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    assert "ALPHA" in answer.stdout and "BETA" in answer.stdout
