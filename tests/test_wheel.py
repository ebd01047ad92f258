"""The sdist and the wheel stand alone: built, installed (not editable) into a fresh venv, pilots run from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from autopyfactory import __version__
from tests.conftest import ConfDir, local_queue, stop_process, wait_for

REPO = Path(__file__).resolve().parent.parent


def run(*argv, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from the sdist (so both are complete), dependencies from PyPI."""
    work = tmp_path_factory.mktemp("wheel")
    run(sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(work)!r})", cwd=REPO)
    sdist = next(work.glob(f"autopyfactory-{__version__}.tar.gz"))
    with tarfile.open(sdist) as archive:
        archive.extractall(work, filter="data")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", work,
        work / f"autopyfactory-{__version__}")
    wheel = next(work.glob(f"autopyfactory-{__version__}-py3-none-any.whl"))
    env = work / "venv"
    run(sys.executable, "-m", "venv", env)
    run(env / "bin/pip", "install", "-q", "--disable-pip-version-check", wheel)
    return env


def start(venv: Path, conf: Path, cwd: Path) -> subprocess.Popen:
    """The installed console script, away from the checkout and its PYTHONPATH."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "APF_WRAPPER_DIR")}
    return subprocess.Popen([str(venv / "bin/autopyfactory"), "--conf", str(conf), "--foreground"],
                            cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finished(spool: Path, queue: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (spool / queue / "done").glob("*.json")]


def test_the_install_is_the_wheel_alone(venv):
    code = "import autopyfactory, importlib.util as u; print(autopyfactory.__file__, u.find_spec('htcondor2'))"
    where, condor = run(venv / "bin/python", "-c", code, cwd=venv).stdout.split()
    assert where.startswith(str(venv)) and condor == "None"  # not editable; htcondor is the [condor] extra
    assert run(venv / "bin/autopyfactory", "--version").stdout.strip() == f"autopyfactory {__version__}"
    assert run(venv / "bin/apf", "--version").stdout.strip() == f"apf (autopyfactory) {__version__}"
    shipped = Path(where).parent / "wrappers"
    assert os.access(shipped / "apf-wrapper.sh", os.X_OK) and (shipped / "plugins/local.py").is_file()
    # the Slurm plugin's batch script, read from the installed package
    source = REPO / "autopyfactory/wrappers/apf-slurm-launcher.sh"
    assert (shipped / "apf-slurm-launcher.sh").read_text() == source.read_text()


def test_a_condor_queue_without_the_bindings_says_how_to_install_them(venv, tmp_path):
    confdir = ConfDir(tmp_path)
    path = confdir.write(local_queue("CE", confdir.spool, batchsubmitplugin="CondorCE",
                                     **{"batchsubmit.condorce.gridresource": "ce.example.org"}))
    result = subprocess.run([str(venv / "bin/apf"), "check-config", "--conf", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr
    assert ("[CE] batchsubmitplugin: the CondorCE plugin needs the htcondor2 module: "
            "install it with pip install 'autopyfactory[condor]'") in result.stdout


def test_a_local_pilot_from_the_wheel_ends_done(venv, tmp_path):
    confdir = ConfDir(tmp_path)
    path = confdir.write(local_queue("WHEEL", confdir.spool))
    confdir.work("WHEEL", 2)
    factory = start(venv, path, tmp_path)
    try:
        done = wait_for(lambda: len(finished(confdir.spool, "WHEEL")) >= 2 and finished(confdir.spool, "WHEEL"),
                        "2 work items done by pilots of the installed wheel", timeout=120)
    finally:
        stop_process(factory)
    assert all(item["exitcode"] == 0 for item in done), done


def test_a_slurm_pilot_from_the_wheel_ends_done(venv, slurm, tmp_path):
    from tests.test_slurm_cluster import cancel_factory_pilots, slurm_queue, write_factory

    confdir = ConfDir(tmp_path)
    fid = write_factory(confdir, slurm_queue("WHEELSLURM", confdir, slurm, "squeue", "sbatch"),
                        "batchstatus.slurm.sleep = 0.5\nbatchstatus.slurm.maxage = 30\n")
    confdir.work("WHEELSLURM", 1)
    factory = start(venv, confdir.root / "factory.conf", tmp_path)
    try:
        done = wait_for(lambda: finished(confdir.spool, "WHEELSLURM"),
                        f"a Slurm pilot of factory {fid} from the installed wheel", timeout=240)
    finally:
        stop_process(factory)
        cancel_factory_pilots(slurm, fid)
    assert done[0]["exitcode"] == 0, done
    # the batch job ran the wrapper shipped inside the installed package
    descriptions = [p.read_text() for p in confdir.logs.glob("*/*/*.sbatch")]
    assert descriptions and all(f"APF_WRAPPER_DIR={venv}/lib/" in text for text in descriptions), descriptions
