"""The operator's command line: versions, log levels, placeholders, check-config as operators read it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autopyfactory import __version__
from autopyfactory.cli.apf import build_parser
from tests.conftest import datagrams, local_queue

BIN = [sys.executable, "-m"]


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BIN, f"autopyfactory.cli.{module}", *args], capture_output=True, text=True, timeout=120)


def test_both_commands_print_the_version():
    assert cli("apf", "--version").stdout.strip() == f"apf (autopyfactory) {__version__}"
    assert cli("daemon", "--version").stdout.strip() == f"autopyfactory {__version__}"


def test_log_level_is_case_insensitive(confdir):
    path = confdir.write(local_queue("Q", confdir.spool))
    result = cli("daemon", "--conf", str(path), "--foreground", "--cycles", "1", "--loglevel", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "cycle" not in result.stdout and " INFO " not in result.stdout


def test_a_placeholder_stops_the_daemon_with_one_line(confdir):
    path = confdir.write(local_queue("Q", confdir.spool))
    path.write_text(path.read_text().replace("factoryId = test-factory", "factoryId = CHANGEME-factory"))
    result = cli("daemon", "--conf", str(path), "--foreground", "--cycles", "1")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"autopyfactory: refusing to start: {path}: [Factory] factoryId: "
                             "still the placeholder 'CHANGEME-factory': set it for this site\n")
    check = cli("apf", "check-config", "--conf", str(path))
    assert check.returncode == 2 and "[Factory] factoryId: still the placeholder" in check.stdout


def test_check_config_into_a_closed_pipe_is_quiet(confdir):
    path = confdir.write("".join(local_queue(f"Q{i}", confdir.spool) for i in range(200)))
    process = subprocess.Popen([*BIN, "autopyfactory.cli.apf", "check-config", "--conf", str(path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().startswith(b"# ")
    process.stdout.close()  # what `| head -1` does
    stderr = process.stderr.read().decode()
    process.wait(60)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_check_config_prints_canonical_keys_and_the_values_used(confdir):
    path = confdir.write(local_queue("Q", confdir.spool, batchqueue=""))
    text = cli("apf", "check-config", "--conf", str(path)).stdout
    lines = set(text.splitlines())
    assert "factoryId = test-factory" in lines and "factoryid = test-factory" not in lines
    assert f"persistence.dbpath = {confdir.root / 'apf.sqlite'}" in lines  # the default, resolved
    assert "batchqueue = Q" in lines and "wmsqueue = Q" in lines
    assert any(line.startswith("executable = /") and line.endswith("/wrappers/apf-wrapper.sh") for line in lines)
    assert "batchsubmit.local.maxrunning = 4" in lines
    as_json = json.loads(cli("apf", "check-config", "--json", "--conf", str(path)).stdout)
    assert as_json["factory"]["factoryId"] == "test-factory"
    assert as_json["factory"]["persistence.dbpath"] == str(confdir.root / "apf.sqlite")
    assert as_json["queues"]["Q"]["enabled"] is True
    assert as_json["queues"]["Q"]["values"]["wmsstatus.local.spooldir"] == str(confdir.spool)


def test_under_systemd_it_notifies_and_logs_for_the_journal(confdir, tmp_path):
    import os
    import socket

    path = confdir.write(local_queue("Q", confdir.spool))
    address = str(tmp_path / "notify")
    journal = tmp_path / "journal-stream"  # stands for the journal's stream, named by $JOURNAL_STREAM
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener, open(journal, "w") as stream:
        listener.bind(address)
        listener.settimeout(60)
        info = os.fstat(stream.fileno())
        result = subprocess.run([*BIN, "autopyfactory.cli.daemon", "--conf", str(path), "--foreground",
                                 "--cycles", "1"], stdout=subprocess.PIPE, stderr=stream, text=True, timeout=120,
                                env={**os.environ, "NOTIFY_SOCKET": address,
                                     "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        messages = datagrams(listener)
    lines = journal.read_text().splitlines()
    assert result.returncode == 0, lines
    assert messages and messages[0].startswith("READY=1\n"), messages
    assert result.stdout == ""  # to the journal (stderr), without a timestamp of our own, with the priority
    assert lines[0].startswith("<6>INFO [MainThread] autopyfactory.")


def parse(args: list[str]):
    """``apf COMMAND ...`` parsed in-process, the command's other required options added."""
    required = {"simulate": ["--activated", "1", "--pending", "0", "--running", "0"], "replay": ["--trace", "x"]}
    return build_parser().parse_args([args[0], *required[args[0]], *args[1:]])


@pytest.mark.parametrize("args, error", [
    (["simulate", "--activated", "-1"], "argument --activated: expected at least 0, got '-1'"),
    (["simulate", "--pending", "many"], "argument --pending: expected an integer, got 'many'"),
    (["simulate", "--running", "1.5"], "argument --running: expected an integer, got '1.5'"),
    (["replay", "--slots", "0"], "argument --slots: expected more than 0, got '0'"),
    (["replay", "--pilot-tries", "two"], "argument --pilot-tries: expected an integer, got 'two'"),
    (["replay", "--cycle", "-0.5"], "argument --cycle: expected more than 0, got '-0.5'"),
    (["replay", "--walltime", "long"], "argument --walltime: expected a number, got 'long'"),
    (["replay", "--cycle", "nan"], "argument --cycle: expected a finite number, got 'nan'"),
    (["replay", "--walltime", "inf"], "argument --walltime: expected a finite number, got 'inf'"),
])
def test_bad_numbers_on_the_command_line_say_what_was_expected(capsys, args: list[str], error: str):
    with pytest.raises(SystemExit) as exit:
        parse(args)
    assert exit.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(error)


@pytest.mark.parametrize("args, value", [
    (["simulate", "--activated", "0"], 0), (["replay", "--slots", "3"], 3), (["replay", "--cycle", "0.5"], 0.5),
])
def test_good_numbers_on_the_command_line_are_typed(args: list[str], value: float):
    got = getattr(parse(args), args[1].lstrip("-").replace("-", "_"))
    assert got == value and type(got) is type(value)
