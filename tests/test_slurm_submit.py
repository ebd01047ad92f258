"""Slurm submit plugin without a cluster: the sbatch command line and failed submissions."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from autopyfactory.commands import CommandResult
from autopyfactory.context import FactoryContext
from autopyfactory.plugins.batchsubmit.slurm import LAUNCHER, Slurm
from tests.conftest import ConfDir


def fake(stdout: str = "", returncode: int | None = 0, error: str | None = None, stderr: str = ""):
    def runner(argv, timeout, env=None, **kw):
        runner.calls.append((list(argv), dict(env or {})))
        return CommandResult(tuple(argv), returncode, stdout, stderr, 0.01, error)

    runner.calls = []
    return runner


def make(confdir: ConfDir, runner, batchqueue: str = "short", **keys: str) -> Slurm:
    text = "\n".join([
        "[SITE_Q]", "wmsqueue = SITE", *([f"batchqueue = {batchqueue}"] if batchqueue else []),
        "wmsstatusplugin = Local", f"wmsstatus.local.spooldir = {confdir.spool}",
        "batchstatusplugin = Slurm", "batchsubmitplugin = Slurm",
        "executable.arguments = --wrappervo=ATLAS --wrapperwmsqueue='SITE Q' --wrappermode=$(reboot)",
        *[f"batchsubmit.slurm.{k} = {v}" for k, v in keys.items()],
    ]) + "\n"
    confdir.write(text)
    config = confdir.load()
    context = FactoryContext(config)
    plugin = Slurm(config.queues["SITE_Q"], context)
    plugin.runner = runner
    return plugin


def test_one_sbatch_array_with_the_queue_keys(confdir: ConfDir):
    runner = fake("4242\n")
    plugin = make(confdir, runner, time="01:00:00", mem="2G", cpus="8", account="atlas", qos="pilot",
                  extraargs="--exclusive --constraint='a b'")
    result = plugin.submit(200)
    assert result.error is None and result.count == 200
    assert result.ids[0] == "4242_0" and result.ids[-1] == "4242_199"
    assert len(runner.calls) == 1
    argv, env = runner.calls[0]
    assert argv[0] == "sbatch" and "--parsable" in argv and "--array=0-199" in argv
    assert "--partition=short" in argv  # batchqueue
    assert "--job-name=apf.test-factory.SITE_Q" in argv
    assert "--comment=apf:test-factory:SITE:SITE_Q" in argv
    for expected in ("--time=01:00:00", "--mem=2G", "--cpus-per-task=8", "--account=atlas", "--qos=pilot",
                     "--exclusive", "--constraint=a b"):
        assert expected in argv
    logdir = next(confdir.logs.glob("*/SITE_Q"))
    assert f"--output={logdir}/%A.%a.out" in argv and f"--error={logdir}/%A.%a.err" in argv
    # the batch script is the constant launcher; arguments go through argv untouched by any shell
    launcher = argv.index(str(logdir / "apf-slurm-launcher.sh"))
    assert Path(argv[launcher]).read_text() == LAUNCHER
    assert argv[launcher + 1:] == ["--wrappervo=ATLAS", "--wrapperwmsqueue=SITE Q", "--wrappermode=$(reboot)"]
    assert env["APF_WRAPPER_DIR"] and env["APF_EXECUTABLE"].endswith("apf-wrapper.sh")
    assert env["PANDA_JSID"] == env["APFFID"] == "test-factory" and env["FACTORYQUEUE"] == "SITE_Q"
    assert env["APF_GTAG_BASE"].endswith("/SITE_Q") and "APF_WMS_SPOOLDIR" in env
    saved = (logdir / "4242.sbatch").read_text()
    assert "--array=0-199" in saved and "APF_WRAPPER_DIR=" in saved and "job array 4242" in saved


def test_only_the_launcher_exists_when_sbatch_runs_and_its_answer_times_the_submission(confdir: ConfDir):
    seen = []

    def runner(argv, timeout, env=None, **kw):
        logdir = Path(next(a for a in argv if a.startswith("--chdir="))[len("--chdir="):])
        seen.append((sorted(p.name for p in logdir.iterdir()), time.time()))
        return CommandResult(tuple(argv), 0, "77\n", "", 0.01, None)

    plugin = make(confdir, runner)
    result = plugin.submit(3)
    # nothing is written between planning and sbatch: the description follows the answer
    assert seen[0][0] == ["apf-slurm-launcher.sh"]
    assert result.count == 3 and seen[0][1] <= result.accepted_at <= time.time()
    logdir = next(confdir.logs.glob("*/SITE_Q"))
    assert sorted(p.name for p in logdir.iterdir()) == ["77.sbatch", "apf-slurm-launcher.sh"]


def test_prepare_makes_the_log_directory_and_launcher_of_a_later_day(confdir: ConfDir):
    plugin = make(confdir, fake("1\n"))
    later = time.time() + 3 * 86400
    plugin.prepare(later)
    launcher = confdir.logs / time.strftime("%Y-%m-%d", time.gmtime(later)) / "SITE_Q" / "apf-slurm-launcher.sh"
    assert launcher.read_text() == LAUNCHER and os.access(launcher, os.X_OK)
    plugin.prepare(later)  # again: unchanged, no error
    assert sorted(p.name for p in launcher.parent.iterdir()) == ["apf-slurm-launcher.sh"]


def test_no_partition_without_batchqueue_uses_the_cluster_default(confdir: ConfDir):
    runner = fake("8\n")
    make(confdir, runner, batchqueue="").submit(1)
    assert not [a for a in runner.calls[0][0] if a.startswith("--partition")]


def test_partition_key_wins_over_batchqueue(confdir: ConfDir):
    runner = fake("7;cluster\n")
    result = make(confdir, runner, partition="long").submit(1)
    assert result.ids == ["7_0"]
    assert "--partition=long" in runner.calls[0][0]


@pytest.mark.parametrize("answer, expected", [
    (fake("", 1, "exit code 1", "sbatch: error: Batch job submission failed: Invalid partition name specified"),
     "Invalid partition name"),
    (fake("", None, "timed out after 60s"), "timed out"),
    (fake("Submitted batch job soon, maybe\n"), "unexpected output"),
    (fake("", None, "cannot run sbatch: No such file or directory"), "cannot run"),
])
def test_failed_sbatch_is_a_failed_submission(confdir: ConfDir, answer, expected):
    result = make(confdir, answer).submit(5)
    assert result.count == 0 and result.ids == []
    assert expected in result.error
    logdir = next(confdir.logs.glob("*/SITE_Q"))
    failed = list(logdir.glob("failed-*.sbatch"))
    assert len(failed) == 1 and expected in failed[0].read_text()


def test_unsplittable_extraargs_is_an_error_not_a_crash(confdir: ConfDir):
    runner = fake("1\n")
    result = make(confdir, runner, extraargs="--comment='unbalanced").submit(3)
    assert result.count == 0 and "extraargs" in result.error and runner.calls == []


def test_array_size_is_capped(confdir: ConfDir):
    runner = fake("9\n")
    result = make(confdir, runner, maxarray="50").submit(80)
    assert result.count == 50 and "capped" in result.message
    assert "--array=0-49" in runner.calls[0][0]


def test_remove_with_nothing_pending_runs_no_scancel(confdir: ConfDir):
    runner = fake("")
    result = make(confdir, runner).remove(5)
    assert result.count == 0 and result.error is None
    assert [c[0][0] for c in runner.calls] == ["squeue"]
