"""The pilot wrapper as a batch system runs it: POSIX top level, python stage, drop-in pilot plugins."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for

WRAPPERS = Path(__file__).resolve().parent.parent / "autopyfactory" / "wrappers"
WRAPPER = WRAPPERS / "apf-wrapper.sh"
SHELLS = [s for s in ("dash", "sh", "bash") if shutil.which(s)]


def run(*args: str, env: dict | None = None, shell: str = "sh", timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("APF_")}
    environment.update(env or {})
    return subprocess.run([shell, str(WRAPPER), *args], capture_output=True, text=True, env=environment,
                          timeout=timeout)


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stdout.strip().splitlines()[-1]


def spool_item(spool: Path, queue: str, command: list[str], name: str = "item-1.json") -> Path:
    directory = spool / queue
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps({"command": command}))
    return path


@pytest.mark.parametrize("shell", SHELLS)
def test_top_level_is_posix_shell(shell):
    assert subprocess.run([shell, "-n", str(WRAPPER)]).returncode == 0
    result = run("--wrapperplugin=local", "--wrappermode=test", shell=shell)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("APF-WRAPPER-START ")
    assert last_line(result) == "APF-WRAPPER-END status=test exit=0"


def test_local_pilot_claims_and_runs_one_work_item(tmp_path):
    item = spool_item(tmp_path, "DEMO", ["sh", "-c", "echo payload-ran"])
    spool_item(tmp_path, "DEMO", ["true"], name="item-2.json")
    result = run("--wrappervo=demo", "--wrapperwmsqueue=DEMO", f"--wrapperserverurl=file://{tmp_path}",
                 env={"APFCID": "42.0"})
    assert result.returncode == 0, result.stderr
    assert "payload-ran" in result.stdout
    assert "APF-WRAPPER-PLUGIN name=local" in result.stdout
    assert last_line(result) == "APF-WRAPPER-END status=ok exit=0"
    assert not item.exists()
    done = json.loads((tmp_path / "DEMO" / "done" / "item-1.json").read_text())
    assert done["exitcode"] == 0 and done["pilot"] == "42.0"
    assert (tmp_path / "DEMO" / "item-2.json").exists()  # one pilot, one item


def test_local_pilot_outcomes(tmp_path):
    spool_item(tmp_path, "Q", ["false"])
    failed = run("--wrapperwmsqueue=Q", env={"APF_WMS_SPOOLDIR": str(tmp_path)})
    assert failed.returncode == 1 and last_line(failed) == "APF-WRAPPER-END status=workfailed exit=1"

    (tmp_path / "Q" / "bad.json").write_text('{"command": "rm -rf /"}')  # a string, not an argv
    bad = run("--wrapperwmsqueue=Q", env={"APF_WMS_SPOOLDIR": str(tmp_path)})
    assert bad.returncode == 67 and last_line(bad) == "APF-WRAPPER-END status=badwork exit=67"

    nowork = run("--wrapperwmsqueue=Q", env={"APF_WMS_SPOOLDIR": str(tmp_path)})
    assert nowork.returncode == 0 and last_line(nowork) == "APF-WRAPPER-END status=nowork exit=0"

    nospool = run("--wrapperwmsqueue=Q")
    assert nospool.returncode == 66 and "status=badoptions" in last_line(nospool)


def test_unknown_plugin_and_mode(tmp_path):
    result = run("--wrapperplugin=nosuch")
    assert result.returncode == 70 and last_line(result) == "APF-WRAPPER-END status=badplugin exit=70"
    assert "known: exec, local" in result.stderr
    mode = run("--wrappermode=sideways")
    assert mode.returncode == 66 and "unknown --wrappermode" in mode.stderr


def test_test_mode_runs_nothing(tmp_path):
    item = spool_item(tmp_path, "Q", ["true"])
    result = run("--wrapperwmsqueue=Q", "--wrappermode=test", env={"APF_WMS_SPOOLDIR": str(tmp_path)})
    assert result.returncode == 0 and last_line(result) == "APF-WRAPPER-END status=test exit=0"
    assert item.exists()


def test_dropin_plugins_by_vo_and_by_name(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "myvo.py").write_text(
        'NAME = "myvo"\nVOS = ("MyVO",)\n\n'
        "def run(ctx):\n"
        '    print("myvo pilot for", ctx.options.wmsqueue, ctx.options.purpose, flush=True)\n'
        '    return "ok", ctx.run_payload(["sh", "-c", "exit 3"])\n')
    (plugins / "broken.py").write_text("this is not python\n")
    env = {"APF_WRAPPER_PLUGINS": str(plugins)}
    by_vo = run("--wrappervo=myvo", "--wrapperwmsqueue=SITE", "--wrapperpurpose=production", env=env)
    assert "myvo pilot for SITE production" in by_vo.stdout
    assert by_vo.returncode == 3 and last_line(by_vo) == "APF-WRAPPER-END status=ok exit=3"
    assert "broken.py not usable" in by_vo.stderr
    by_name = run("--wrapperplugin=MyVo", env=env)
    assert "APF-WRAPPER-PLUGIN name=myvo" in by_name.stdout
    # a VO no plugin claims, with no pilot command: said so, no silent fallback
    other = run("--wrappervo=lhcb", "--wrappermode=test", env=env)
    assert other.returncode == 70 and last_line(other) == "APF-WRAPPER-END status=badplugin exit=70"
    assert "no pilot plugin for VO 'lhcb'" in other.stderr and "APF_PILOT" in other.stderr


def test_crashing_plugin_is_reported(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "crash.py").write_text('NAME = "crash"\n\ndef run(ctx):\n    raise RuntimeError("boom")\n')
    result = run("--wrapperplugin=crash", env={"APF_WRAPPER_PLUGINS": str(plugins)})
    assert result.returncode == 71 and last_line(result) == "APF-WRAPPER-END status=plugincrash exit=71"
    assert "boom" in result.stderr


def test_exec_plugin_passes_options_and_exit_code():
    result = run("--wrapperplugin=exec", "--wrapperwmsqueue=SITE_Q", "--",
                 "sh", "-c", 'echo "queue=$APF_WRAPPER_WMSQUEUE"; exit 5')
    assert "queue=SITE_Q" in result.stdout
    assert result.returncode == 5 and last_line(result) == "APF-WRAPPER-END status=pilotfailed exit=5"


def test_no_python_gives_a_clear_end(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("dirname", "date", "hostname", "uname"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), bindir / tool)
    result = subprocess.run(["/bin/sh", str(WRAPPER), "--wrapperplugin=local"], capture_output=True, text=True,
                            env={"PATH": str(bindir)}, timeout=30)
    assert result.returncode == 64
    assert last_line(result) == "APF-WRAPPER-END status=nopython exit=64"


def test_copied_script_finds_its_stage_through_apf_wrapper_dir(tmp_path):
    copy = tmp_path / "slurm_script"
    shutil.copy(WRAPPER, copy)
    result = subprocess.run(["sh", str(copy), "--wrappermode=test"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "APF_WRAPPER_DIR": str(WRAPPERS)})
    assert result.returncode == 0 and last_line(result) == "APF-WRAPPER-END status=test exit=0"
    lost = subprocess.run(["sh", str(copy)], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "APF_WRAPPER_DIR"})
    assert lost.returncode == 65 and "status=nostage" in last_line(lost)


def test_sigterm_stops_the_payload_and_still_ends_with_a_marker(tmp_path):
    pidfile = tmp_path / "payload.pid"
    process = subprocess.Popen(
        ["sh", str(WRAPPER), "--wrapperplugin=exec", "--", "sh", "-c", f'echo $$ > {pidfile}; exec sleep 60'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    payload = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="the payload's pid"))
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 143
    assert out.strip().splitlines()[-1] == "APF-WRAPPER-END status=killed exit=143"
    # well before its ``sleep 60`` would end by itself
    wait_for(lambda: not Path(f"/proc/{payload}").exists(), what="the payload to be gone", timeout=30)


# ---------------------------------------------------------------- APF 2.4 wrapper arguments

APF24_ARGS = ["--wrappergrid=OSG", "--wrapperwmsqueue=BNL_PROD", "--wrapperbatchqueue=BNL_PROD-condor",
              "--wrappervo=ATLAS", "--wrappertarballurl=http://dev.racf.bnl.gov/dist/wrapper/wrapper.tar.gz",
              "--wrapperserverurl=http://pandaserver.cern.ch:25080/cache/pilot", "--wrapperloglevel=debug",
              "-s", "BNL_PROD", "-h", "BNL_PROD-condor", "-p", "25443", "-w", "generic", "-u", "managed",
              "--pilot-user=ATLAS", "-j", "false", "--arg with spaces"]
PASSTHROUGH = APF24_ARGS[7:]


def pilot_script(tmp_path: Path) -> Path:
    """A pilot that writes its argv, one per line, where the test can read it."""
    script = tmp_path / "pilot.sh"
    script.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done > "$(dirname "$0")/argv"\n')
    script.chmod(0o755)
    return script


def test_apf24_passthrough_arguments_reach_the_pilot_unchanged(tmp_path):
    """APF 2.4's executable.arguments: --wrapper* for the wrapper, the rest (-w generic -u managed ...) for the pilot."""
    script = pilot_script(tmp_path)
    result = run(*APF24_ARGS, env={"APF_PILOT": str(script)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv").read_text().splitlines() == PASSTHROUGH
    assert "pilot command is given for VO 'ATLAS'" in result.stderr and "running the pilot command as given" in result.stderr
    assert "APF-WRAPPER-PLUGIN name=exec" in result.stdout
    assert last_line(result) == "APF-WRAPPER-END status=ok exit=0"


def test_passthrough_arguments_follow_the_pilot_command_after_the_separator(tmp_path):
    script = pilot_script(tmp_path)
    result = run("--wrappervo=ATLAS", "-w", "generic", "--wrapperwmsqueue", "Q", "-u", "managed", "--",
                 str(script), "--first")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv").read_text().splitlines() == ["--first", "-w", "generic", "-u", "managed"]
    assert "APF_WRAPPER" not in result.stderr


def test_apf24_atlas_queue_without_pilot_command_runs_the_panda_pilot():
    result = run(*APF24_ARGS, "--wrappermode=test")
    assert result.returncode == 0 and last_line(result) == "APF-WRAPPER-END status=test exit=0"
    assert "APF-WRAPPER-PLUGIN name=panda" in result.stdout


def test_a_vo_without_plugin_or_pilot_command_is_a_clear_end_not_the_local_plugin():
    result = run("--wrappervo=CMS", "--wrapperwmsqueue=T2_X", "-s", "T2_X")
    assert result.returncode == 70 and last_line(result) == "APF-WRAPPER-END status=badplugin exit=70"
    assert "no pilot plugin for VO 'CMS'" in result.stderr
    assert "name=local" not in result.stdout
