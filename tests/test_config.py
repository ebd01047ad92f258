"""Config loading: inheritance, interpolation, and one clear line per problem."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autopyfactory.config import ConfigError, split_list
from tests.conftest import local_queue


def problems(confdir) -> list[str]:
    with pytest.raises(ConfigError) as info:
        confdir.load()
    return [str(p) for p in info.value.problems]


def test_default_section_is_inherited_and_interpolated(confdir):
    confdir.write("""
        [DEFAULT]
        wmsstatusplugin = Local
        batchstatusplugin = Local
        batchsubmitplugin = Local
        apfqueue.sleep = 42
        executable.arguments = --wrapperwmsqueue=%(wmsqueue)s --wrappergrid=%(grid)s
        grid = osg

        [SITE_A]
        wmsqueue = PANDA_A

        [SITE_B]
        wmsqueue = PANDA_B
        apfqueue.sleep = 7
        grid = egi
    """)
    config = confdir.load()
    a, b = config.queues["SITE_A"], config.queues["SITE_B"]
    assert a.get("apfqueue.sleep") == 42.0
    assert b.get("apfqueue.sleep") == 7.0
    assert a.get("executable.arguments") == "--wrapperwmsqueue=PANDA_A --wrappergrid=osg"
    assert b.get("executable.arguments") == "--wrapperwmsqueue=PANDA_B --wrappergrid=egi"
    assert a.get("schedplugin") == ["Ready"]  # the default chain
    assert a.batchqueue == "PANDA_A"  # batchqueue defaults to wmsqueue


def test_comma_lists_and_escaped_commas():
    assert split_list("Ready, Scale,MaxPerCycle ,") == ["Ready", "Scale", "MaxPerCycle"]
    assert split_list(r"+a = 1\, 2, b") == ["+a = 1, 2", "b"]


def test_plugin_defaults_filled_and_names_normalised(confdir):
    confdir.write(local_queue("Q", confdir.spool, schedplugin="ready, maxpercycle"))
    queue = confdir.load().queues["Q"]
    assert queue.get("schedplugin") == ["Ready", "MaxPerCycle"]
    assert queue.get("sched.ready.offset") == 0
    assert queue.get("batchsubmit.local.maxrunning") == 4


def test_wrong_type_names_file_section_key_and_value(confdir):
    path = confdir.write(local_queue("Q", confdir.spool, **{"apfqueue.sleep": "often"}))
    assert problems(confdir) == [
        f"{path.parent / 'queues.conf'}: [Q] apfqueue.sleep: not a number (expected a number, got 'often')"
    ]


def test_out_of_range(confdir):
    confdir.write(local_queue("Q", confdir.spool, **{"batchsubmit.local.maxrunning": "0"}))
    [line] = problems(confdir)
    assert "[Q] batchsubmit.local.maxrunning: too small (expected at least 1, got '0')" in line


def test_unknown_plugin_lists_the_available_ones(confdir):
    confdir.write(local_queue("Q", confdir.spool, batchsubmitplugin="CondorPilot"))
    [line] = problems(confdir)
    assert "[Q] batchsubmitplugin: unknown batch submit plugin" in line
    assert "expected one of CondorARC, CondorCE, CondorLocal, CondorSSH, Local, Slurm, got 'CondorPilot'" in line


def test_missing_required_key(confdir):
    confdir.write("""
        [Q]
        wmsstatusplugin = Local
        batchstatusplugin = Local
    """)
    assert any("[Q] batchsubmitplugin: required key missing" in line for line in problems(confdir))


def test_disabled_queue_may_be_incomplete(confdir):
    confdir.write("""
        [Q]
        enabled = False
    """)
    assert confdir.load().enabled_queues == {}


def test_bad_interpolation(confdir):
    confdir.write(local_queue("Q", confdir.spool, **{"executable.arguments": "--x=%(nosuchkey)s"}))
    [line] = problems(confdir)
    assert "[Q] executable.arguments: bad %(...)s interpolation" in line


def test_unparsable_and_missing_files(confdir):
    confdir.write("this is not an ini file\n")
    [line] = problems(confdir)
    assert "queues.conf: cannot parse line 1" in line
    (confdir.root / "queues.conf").unlink()
    [line] = problems(confdir)
    assert "queues.conf: cannot read" in line


def test_factory_section_errors(confdir):
    confdir.write(local_queue("Q", confdir.spool), factory="logserver.port = 99999\nenablequeues = maybe\n")
    lines = problems(confdir)
    assert any("[Factory] logserver.port: too large (expected at most 65535, got '99999')" in x for x in lines)
    assert any("[Factory] enablequeues: not a boolean (expected true or false, got 'maybe')" in x for x in lines)


def test_unknown_keys_warn_with_closest_known_key(confdir):
    confdir.write(local_queue("Q", confdir.spool, **{"sched.maxpercycle.maximun": "5",
                                                     "batchsubmit.condorfoo.gridresource": "x"}))
    config = confdir.load()
    warnings = [str(w) for w in config.warnings]
    assert any("sched.maxpercycle.maximun: unknown key, ignored (closest known key: "
               "sched.maxpercycle.maximum)" in w for w in warnings)
    assert any("batchsubmit.condorfoo.gridresource: key of a batch submit plugin that is not installed"
               in w for w in warnings)


def test_unknown_monitor_section_and_credential_profile(confdir):
    confdir.write(local_queue("Q", confdir.spool, monitorsection="nosuch",
                              **{"batchsubmit.local.proxy": "atlas"}))
    lines = problems(confdir)
    assert any("[Q] monitorsection: no section [nosuch] in monitorConf" in x for x in lines)


def test_queue_conf_from_http_url(confdir, tmp_path):
    import http.server
    import threading

    body = local_queue("REMOTE", confdir.spool).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/queues.conf" else 404)
            self.end_headers()
            self.wfile.write(body if self.path == "/queues.conf" else b"")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        confdir.write(local_queue("LOCAL", confdir.spool))
        factory = confdir.root / "factory.conf"
        text = factory.read_text().replace("queueConf = queues.conf",
                                           f"queueConf = queues.conf, {url}/queues.conf")
        factory.write_text(text)
        assert set(confdir.load().queues) == {"LOCAL", "REMOTE"}
        factory.write_text(text.replace("/queues.conf\n", "/missing.conf\n"))
        [line] = problems(confdir)
        assert line.startswith(f"{url}/missing.conf: cannot fetch")
    finally:
        server.shutdown()


def run_apf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autopyfactory.cli.apf", *args],
                          capture_output=True, text=True, timeout=60)


def test_check_config_reports_all_three_mistakes(confdir):
    path = confdir.write("""
        [DEFAULT]
        wmsstatusplugin = Local
        batchstatusplugin = Local
        batchsubmitplugin = Local

        [ONE]
        apfqueue.sleep = -5

        [TWO]
        schedplugin = Ready, MaxPerCycel

        [THREE]
        sched.maxpercycle.maximum = lots
    """)
    result = run_apf("check-config", "--conf", str(path))
    assert result.returncode == 2
    queues = str(confdir.root / "queues.conf")
    lines = result.stdout.splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0].startswith(f"{queues}: [ONE] apfqueue.sleep: too small")
    assert lines[1].startswith(f"{queues}: [TWO] schedplugin: unknown scheduler plugin")
    assert "got 'MaxPerCycel'" in lines[1]
    assert lines[2] == (f"{queues}: [THREE] sched.maxpercycle.maximum: not an integer "
                        "(expected an integer, got 'lots')")


def test_check_config_prints_effective_config(confdir):
    path = confdir.write(local_queue("Q", confdir.spool))
    result = run_apf("check-config", "--conf", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[Q]" in result.stdout
    assert "sched.ready.offset = 0" in result.stdout
    assert "batchsubmit.local.maxrunning = 4" in result.stdout


def test_shipped_configs_are_valid():
    result = run_apf("check-config", "--conf", "etc/demo/factory.conf")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[DEMO]" in result.stdout


def test_invalid_utf8_names_the_file_and_the_byte(confdir):
    path = confdir.write(local_queue("Q", confdir.spool))
    queues = confdir.root / "queues.conf"
    queues.write_bytes(queues.read_bytes().replace(b"apfqueue.sleep", b"# caf\xe9 \xff\napfqueue.sleep", 1))
    offset = queues.read_bytes().index(b"\xe9")
    result = run_apf("check-config", "--conf", str(path))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    line = queues.read_bytes()[:offset].count(b"\n") + 1
    assert result.stdout.strip() == (f"{queues}: not UTF-8 text: byte {offset} (line {line}, column 6) is 0xe9 "
                                     "(expected a UTF-8 text file)")
