"""``apf status | config | audit`` without the web server: a real factory's store and config files answer.

The factory runs its cycles with ``logserver.enabled = False`` (the default)
and stops; ``apf`` then reads what it left, says so, exits like a monitoring
check, and never writes to (or moves aside) the daemon's store.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from autopyfactory.cli import apf
from autopyfactory.factory import Factory
from autopyfactory.persistence import Store
from autopyfactory.records import AdminAction
from tests.conftest import ConfDir, local_queue, wait_for
from tests.test_panda_plugin import panda_queue
from tests.web_support import free_port, start_factory

SLOW = {"apfqueue.sleep": "3600"}  # one cycle, never overdue during the test (a queue with a status waits for it)


def apf_run(capsys, *argv: str) -> tuple[int, str, str]:
    code = apf.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_cycles(confdir, queues: str, factory: str = "") -> Path:
    """Run every queue's first cycle with the web server off, stop; the factory.conf path."""
    path = confdir.write(queues, factory=factory)
    config = confdir.load()
    running = Factory(config)
    running.start(cycles=1)
    try:
        wait_for(lambda: all(q.cycles >= 1 for q in running.queues.values()), what="every queue's first cycle")
    finally:
        running.stop(timeout=10)
    return path


def two_queues(confdir) -> str:
    down = f"http://127.0.0.1:{free_port()}/api/v1"  # nobody listens: the WMS status is unknown
    return (local_queue("OK_Q", confdir.spool, **SLOW)
            + panda_queue("DOWN_Q", down, **{"apfqueue.sleep": "1", "schedplugin": "Ready"})
            + local_queue("OFF_Q", confdir.spool, enabled="False"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_status_reads_the_local_store_says_so_and_exits_like_a_check(confdir, capsys):
    conf = str(run_cycles(confdir, two_queues(confdir)))
    store = confdir.root / "apf.sqlite"
    before = digest(store)

    code, out, err = apf_run(capsys, "status", "--conf", conf)
    assert code == 2, err  # DOWN_Q is critical
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()[:1] in (["OK_Q"], ["DOWN_Q"],
                                                                                        ["OFF_Q"])}
    assert rows["DOWN_Q"].split()[1] == "critical" and "WMS status unknown" in rows["DOWN_Q"]
    assert rows["OK_Q"].split()[1] == "ok" and rows["OFF_Q"].split()[1] == "disabled"
    assert (f"answered from the local store {store} and {conf}, read-only "
            f"(logserver.enabled = False in {conf}: the factory has no web server to ask)") in " ".join(out.split())
    assert "cannot reach" not in out + err

    assert apf_run(capsys, "status", "OK_Q", "--conf", conf)[0] == 0
    code, out, _ = apf_run(capsys, "status", "DOWN_Q", "--conf", conf, "--json")
    answer = json.loads(out)
    assert code == 2 and answer["source"]["answered_by"] == "local" and answer["source"]["store"] == str(store)
    assert answer["queues"][0]["cycle_count"] == 1 and answer["queues"][0]["last_cycle"]
    code, _, err = apf_run(capsys, "status", "NOPE", "--conf", conf)
    assert code == 3 and "no queue NOPE" in err

    # an operator's pause, as the daemon keeps it, shows; a pause whose end has passed does not
    with_pause = Store(str(store))
    with_pause.record_pause("DOWN_Q", {"mode": "paused", "reason": "site downtime", "since": 1.0, "until": None})
    with_pause.record_pause("OK_Q", {"mode": "drained", "reason": "over", "since": 1.0, "until": 2.0})
    with_pause.close()
    before = digest(store)
    code, out, _ = apf_run(capsys, "status", "--conf", conf, "--json")
    health = {q["name"]: (q["health"], q["health_reason"]) for q in json.loads(out)["queues"]}
    assert code == 0 and health["DOWN_Q"] == ("paused", "paused by the operator: site downtime")
    assert health["OK_Q"][0] == "ok"
    assert digest(store) == before  # read, never written
    assert not list(confdir.root.glob("apf.sqlite.corrupt-*"))
    # nor a -wal or -shm file left behind: owned by the reader (root), they would stop the daemon's user
    assert sorted(p.name for p in confdir.root.glob("apf.sqlite*")) == ["apf.sqlite"]


def test_a_store_the_factory_has_open_is_read_as_it_is_now(confdir, capsys):
    conf = str(run_cycles(confdir, local_queue("Q", confdir.spool, **SLOW)))
    writer = Store(str(confdir.root / "apf.sqlite"))  # the running daemon's connection: the WAL is in use
    try:
        writer.record_pause("Q", {"mode": "drained", "reason": "downtime", "since": 1.0, "until": None})
        assert (confdir.root / "apf.sqlite-wal").exists()
        code, out, _ = apf_run(capsys, "status", "Q", "--conf", conf, "--json")
        assert code == 0 and json.loads(out)["queues"][0]["health"] == "drained"
    finally:
        writer.close()


def test_a_stopped_factory_is_a_warning_naming_what_to_check(confdir, capsys):
    conf = str(run_cycles(confdir, local_queue("Q", confdir.spool, **{"apfqueue.sleep": "0.3"}),
                          factory="persistence.flushinterval = 0.5\n"))  # the store lags the factory that much

    def overdue():
        code, out, _ = apf_run(capsys, "status", "--conf", conf)
        return (code, out) if code == 1 else None

    code, out = wait_for(overdue, what="the last cycle overdue (3 x apfqueue.sleep)")
    assert "FACTORY PROBLEM: no queue has run a cycle for" in out
    assert "is the factory running? (systemctl status autopyfactory)" in out


def test_a_missing_or_broken_store_is_unknown_and_left_alone(confdir, capsys):
    conf = str(confdir.write(local_queue("Q", confdir.spool)))
    store = confdir.root / "apf.sqlite"
    code, _, err = apf_run(capsys, "status", "--conf", conf)
    assert code == 3 and f"the local store cannot answer: {store} does not exist" in err
    assert not store.exists()  # not created by apf
    store.write_bytes(b"this is not a database" * 100)
    before = digest(store)
    code, _, err = apf_run(capsys, "status", "--conf", conf)
    assert code == 3 and f"the local store cannot answer: cannot read {store}" in err
    assert digest(store) == before and not list(confdir.root.glob("apf.sqlite.corrupt-*"))


def test_config_and_audit_read_the_files_and_other_commands_say_what_to_use(confdir, capsys):
    auth = "[tok]\nplugin = Token\ntoken.tokenfile = /etc/secret/token\n"
    conf = str(confdir.write(local_queue("Q", confdir.spool, **SLOW), auth=auth))
    code, out, err = apf_run(capsys, "config", "--conf", conf)
    assert code == 0, err
    assert out.startswith(f"# the configuration files as they are now, from {conf} (logserver.enabled = False")
    assert "[Q]" in out and "/etc/secret/token" not in out and "<redacted>" in out
    assert json.loads(apf_run(capsys, "config", "--conf", conf, "--json")[1])["source"]["answered_by"] == "local"

    store = Store(str(confdir.root / "apf.sqlite"))
    store.record_admin(AdminAction(1.0e9, "system", "resume", "Q", "ok", 0, "pause ended at its --until"))
    store.close()
    code, out, _ = apf_run(capsys, "audit", "--conf", conf)
    assert code == 0 and "pause ended at its --until" in out and "answered from the local store" in out

    for command, hint in (("reload", "systemctl reload autopyfactory"), ("stop", "systemctl stop autopyfactory"),
                          ("pause", "set logserver.enabled = True")):
        code, _, err = apf_run(capsys, command, *(["Q"] if command == "pause" else []), "--conf", conf)
        assert code == 3 and "no web server to ask (logserver.enabled = False" in err and hint in err


def test_local_on_demand_when_the_web_server_is_enabled_but_down(confdir, capsys):
    conf = str(run_cycles(confdir, local_queue("Q", confdir.spool, **SLOW)))
    enabled = f"logserver.enabled = True\nlogserver.port = {free_port()}\n"
    Path(conf).write_text(Path(conf).read_text() + enabled)
    code, _, err = apf_run(capsys, "status", "--conf", conf)
    assert code == 3 and "cannot reach the factory" in err and "--local" in err
    code, out, _ = apf_run(capsys, "status", "--conf", conf, "--local")
    assert code == 0 and "read-only (--local)" in out


def test_history_from_the_store_and_from_the_web_server(confdir, tmp_path, capsys):
    conf = str(run_cycles(confdir, two_queues(confdir)))
    code, out, err = apf_run(capsys, "history", "DOWN_Q", "--conf", conf)
    assert code == 0, err
    rows = out.splitlines()
    assert rows[0].split() == ["CYCLE", "STARTED", "WMSREADY", "PENDING", "RUNNING", "DECIDED", "SUBMITTED", "MESSAGE"]
    assert rows[2].split()[0] == "1" and rows[2].split()[2] == "?"  # the WMS status was unknown
    assert "answered from the local store" in out
    answer = json.loads(apf_run(capsys, "history", "OK_Q", "--conf", conf, "--json")[1])
    assert answer["source"]["answered_by"] == "local" and [c["number"] for c in answer["cycles"]] == [1]
    assert answer["cycles"][0]["batch"]["pending"] == 0
    code, _, err = apf_run(capsys, "history", "NOPE", "--conf", conf)
    assert code == 1 and "no queue NOPE" in err

    (tmp_path / "web").mkdir()
    web = ConfDir(tmp_path / "web")
    run = start_factory(web, {"Q": 0})
    try:
        wait_for(lambda: run.factory.queues["Q"].cycles >= 2, what="two cycles")
        code, out, err = apf_run(capsys, "history", "Q", "-n", "2", "--conf", str(web.root / "factory.conf"))
        assert code == 0, err
        numbers = [int(line.split()[0]) for line in out.splitlines()[2:]]
        assert len(numbers) == 2 and numbers[0] > numbers[1] and "local store" not in out  # newest first, from the API
    finally:
        run.stop()
