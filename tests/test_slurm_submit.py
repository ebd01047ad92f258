"""Slurm submit plugin without a cluster: the sbatch command line and failed submissions."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from autopyfactory.commands import CommandResult
from autopyfactory.config import ConfigError
from autopyfactory.context import FactoryContext
from autopyfactory.paths import SLURM_LAUNCHER
from autopyfactory.plugins.batchsubmit import slurm as slurm_module
from autopyfactory.plugins.batchsubmit.slurm import Slurm, launcher
from tests.conftest import ConfDir

LAUNCHER = Path(SLURM_LAUNCHER).read_text()


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
    # the batch script is the constant launcher shipped with the package; arguments go through argv
    # untouched by any shell
    script = argv.index(SLURM_LAUNCHER)
    assert Path(argv[script]).parent.name == "wrappers" and "exec \"$APF_EXECUTABLE\" \"$@\"" in LAUNCHER
    assert argv[script + 1:] == ["--wrappervo=ATLAS", "--wrapperwmsqueue=SITE Q", "--wrappermode=$(reboot)"]
    assert env["APF_WRAPPER_DIR"] and env["APF_EXECUTABLE"].endswith("apf-wrapper.sh")
    assert env["PANDA_JSID"] == env["APFFID"] == "test-factory" and env["FACTORYQUEUE"] == "SITE_Q"
    assert env["APF_GTAG_BASE"].endswith("/SITE_Q") and "APF_WMS_SPOOLDIR" in env
    saved = (logdir / "4242.sbatch").read_text()
    assert "--array=0-199" in saved and "APF_WRAPPER_DIR=" in saved and "job array 4242" in saved
    assert LAUNCHER in saved and SLURM_LAUNCHER in saved  # the description still holds the script's text


def test_the_log_directory_is_empty_when_sbatch_runs_and_its_answer_times_the_submission(confdir: ConfDir):
    seen = []

    def runner(argv, timeout, env=None, **kw):
        logdir = Path(next(a for a in argv if a.startswith("--chdir="))[len("--chdir="):])
        seen.append((sorted(p.name for p in logdir.iterdir()), time.time()))
        return CommandResult(tuple(argv), 0, "77\n", "", 0.01, None)

    plugin = make(confdir, runner)
    result = plugin.submit(3)
    # nothing is written between planning and sbatch: no launcher per queue, the description follows the answer
    assert seen[0][0] == []
    assert result.count == 3 and seen[0][1] <= result.accepted_at <= time.time()
    logdir = next(confdir.logs.glob("*/SITE_Q"))
    assert sorted(p.name for p in logdir.iterdir()) == ["77.sbatch"]


FILE_EVENTS = ("open", "os.mkdir", "os.rename", "os.replace", "os.chmod", "os.remove", "os.listdir", "os.scandir")
_watched: dict[int, list] = {}


def _audit(event, args):
    calls = _watched.get(threading.get_ident())
    if calls is not None and event in FILE_EVENTS:
        calls.append((event, str(args[0])))


sys.addaudithook(_audit)  # for the whole session: cheap, records only for a thread in _watched


def test_the_submit_path_touches_no_file_before_sbatch_but_the_log_directory(confdir: ConfDir):
    """Before sbatch, a cycle whose log directory is ready only checks it (one mkdir that finds it):
    no batch script is read, compared or written per queue."""
    seen = []

    def runner(argv, timeout, env=None, **kw):
        seen.append(list(_watched.pop(threading.get_ident())))
        return CommandResult(tuple(argv), 0, "78\n", "", 0.01, None)

    plugin = make(confdir, runner)
    plugin.prepare(time.time())
    logdir = plugin.context.logdir(plugin.queue.name, create=False)
    assert os.path.isdir(logdir)
    _watched[threading.get_ident()] = []
    try:
        result = plugin.submit(5)
    finally:
        _watched.pop(threading.get_ident(), None)
    assert result.count == 5 and len(seen) == 1
    assert seen[0] == [("os.mkdir", logdir)], seen[0]
    assert sorted(os.listdir(logdir)) == ["78.sbatch"]


def test_prepare_makes_the_log_directory_of_a_later_day(confdir: ConfDir):
    plugin = make(confdir, fake("1\n"))
    later = time.time() + 3 * 86400
    plugin.prepare(later)
    logdir = confdir.logs / time.strftime("%Y-%m-%d", time.gmtime(later)) / "SITE_Q"
    assert logdir.is_dir() and list(logdir.iterdir()) == []
    plugin.prepare(later)  # again: no error, nothing written
    assert list(logdir.iterdir()) == []


def test_the_shipped_launcher_is_the_batch_script(confdir: ConfDir):
    path, text = launcher()
    assert path == SLURM_LAUNCHER and os.path.isfile(path) and text == LAUNCHER and text.startswith("#!/bin/sh\n")
    assert os.access(path, os.X_OK)  # like apf-wrapper.sh (sbatch itself only reads it)


@pytest.mark.parametrize("broken, why", [("missing", "No such file or directory"),
                                         ("directory", "Is a directory"),
                                         ("empty", "not a batch script (no #! line)")])
def test_an_unusable_shipped_launcher_is_a_clear_error_not_a_crash(confdir: ConfDir, tmp_path, monkeypatch,
                                                                   broken, why):
    runner = fake("5\n")
    plugin = make(confdir, runner)  # read while the launcher was there: cached for the process
    path = tmp_path / "apf-slurm-launcher.sh"
    if broken == "directory":
        path.mkdir()
    elif broken == "empty":
        path.write_text("")
    monkeypatch.setattr(slurm_module, "SLURM_LAUNCHER", str(path))
    slurm_module.launcher.cache_clear()  # as in a fresh process
    result = plugin.submit(4)
    assert result.count == 0 and runner.calls == []
    assert why in result.error and str(path) in result.error and "reinstall autopyfactory" in result.error
    # and when the configuration is read, the queue is refused with the same sentence
    with pytest.raises(ConfigError) as refused:
        confdir.load()
    assert "[SITE_Q] batchsubmitplugin:" in str(refused.value) and why in str(refused.value)


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
