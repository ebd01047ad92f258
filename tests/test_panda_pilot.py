"""The wrapper's PanDA stage (autopyfactory/wrappers/plugins/panda.py).

With the real PanDA pilot (``panda-pilot`` from PyPI, its sdist served as the
pilot tarball URL) against the real PanDA server (tests/pandainstance.py),
run as a non-root user with PILOT_NOKILL=1: with a job the pilot gets it,
runs it, stages its log out and reports it (the job ends ``finished`` once
the server's adder has run) and the wrapper ends ``ok``; with none the
pilot exits 0 and the wrapper, from the pilot's own report, ends ``empty``
(exit 75). The other ends are checked with small tarballs whose pilot.py
plays one part each (a pilot that fails, that ends 0 without any answer, a
tarball without pilot.py, the wrong version, a path leaving the folder).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from autopyfactory.info import EMPTY_EXIT, ended_state
from tests.pandainstance import PILOT_USER, PilotSite, pilot_missing
from tests.test_wrapper import WRAPPER, last_line

PLUGIN = Path(WRAPPER).parent / "plugins" / "panda.py"


def wrapper(*args: str, env: dict[str, str], user: str | None = PILOT_USER, cwd: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """The wrapper as a batch system starts it, as ``user`` (None: as we are), with only ``env``."""
    environment = {"PATH": "/usr/bin:/bin", "HOME": cwd or "/tmp", "LANG": "C.UTF-8", **env}
    prefix = ["runuser", "-u", user, "--"] if user else []
    return subprocess.run([*prefix, "env", "-i", *(f"{k}={v}" for k, v in environment.items()),
                           "sh", str(WRAPPER), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def pilot_site(panda_server):
    why = pilot_missing()
    if why:
        pytest.skip(why)
    site = PilotSite(panda_server, f"APF_PILOT_{uuid.uuid4().hex[:6].upper()}")
    panda_server.add_site(site.queue)
    yield site
    site.close()


def atlas_args(site: PilotSite, *extra: str) -> list[str]:
    """executable.arguments of an ATLAS queue: the wrapper's options, then the queue's pilot options."""
    return ["--wrappervo=ATLAS", f"--wrapperwmsqueue={site.queue}", f"--wrapperpiloturl={site.pilot_url}",
            f"--wrapperpilotversion={site.version}", *extra, *site.pilot_arguments()]


def test_the_real_pilot_runs_a_job_and_ends_done_then_finds_none_and_ends_empty(panda_server, pilot_site):
    ids = panda_server.submit(pilot_site.queue, 1)
    done = wrapper(*atlas_args(pilot_site), env=pilot_site.environment(), cwd=str(pilot_site.directory))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert last_line(done) == "APF-WRAPPER-END status=ok exit=0"
    assert "APF-WRAPPER-PLUGIN name=panda" in done.stdout
    assert f"APF-PANDA exit=0 jobs={ids[0]} server_said_no_job=False" in done.stdout
    q = pilot_site.queue  # the pilot's own view of its arguments
    assert f"queue='{q}', resource='{q}', site='{q}', job_label='managed', version_tag='PR'" in done.stdout
    # the job ran (the payload's own output is in the log the pilot staged out) and was reported
    assert panda_server.job_states(ids) == {ids[0]: "holding"}
    assert "main payload execution returned zero exit code" in done.stdout
    panda_server.run_adder()
    assert panda_server.job_states(ids) == {ids[0]: "finished"}
    assert panda_server.psql("SELECT transexitcode, piloterrorcode, modificationhost FROM doma_panda.jobsarchived4 "
                             f"WHERE pandaid = {ids[0]}").split("|")[:2] == ["0", "0"]

    empty = wrapper(*atlas_args(pilot_site), env=pilot_site.environment(), cwd=str(pilot_site.directory))
    assert empty.returncode == EMPTY_EXIT, empty.stdout[-3000:] + empty.stderr[-2000:]
    assert last_line(empty) == f"APF-WRAPPER-END status=empty exit={EMPTY_EXIT}"
    assert "no jobs in PanDA" in empty.stdout  # the server's answer, in the pilot's own log
    assert "APF-PANDA exit=0 jobs=none server_said_no_job=True" in empty.stdout  # the pilot itself exits 0
    assert ended_state(empty.returncode) == "empty"


# ---------------------------------------------------------------- the other ends, with stand-in pilots

def tarball(directory: Path, pilot: str | None, version: str = "3.7.0.36", evil: bool = False) -> str:
    """A pilot tarball whose pilot.py is ``pilot`` (python code); its file URL."""
    path = directory / f"pilot-{uuid.uuid4().hex[:6]}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        def add(name: str, text: str) -> None:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))

        if pilot is not None:
            add("pilot3/pilot.py", pilot)
        add("pilot3/PILOTVERSION", version + "\n")
        if evil:
            add("../escaped.txt", "outside")
    return f"file://{path}"


STAND_IN = """import json, os, sys
source = os.environ["PANDA_PILOT_SOURCE"]
with open(os.environ["APF_SEEN"], "w") as seen:
    json.dump([sys.argv[1:], os.environ.get("PILOT_NOKILL")], seen)
{body}
"""


def stand_in(tmp_path: Path, body: str, **kwargs) -> tuple[list[str], dict[str, str]]:
    url = tarball(tmp_path, STAND_IN.format(body=body), **kwargs)
    work = tmp_path / "w"
    work.mkdir(exist_ok=True)
    return (["--wrapperplugin=panda", "--wrapperwmsqueue=SITE_X", f"--wrapperpiloturl={url}",
             "--wrapperresourcetype=MCORE", "-p", "443"], {"TMPDIR": str(work), "APF_SEEN": str(tmp_path / "seen")})


@pytest.mark.parametrize("body, status, code", [
    ("sys.exit(3)", "pilotfailed", 3),
    ("print('getJob: no answer'); sys.exit(0)", "pilotnojob", 73),
    ("print(\"job definition = {'StatusCode': 20, 'errorDialog': 'no jobs in PanDA'}\")", "empty", EMPTY_EXIT),
    ("open(os.path.join(source, 'pandaIDs.out'), 'w').write('4242\\n')", "ok", 0),
])
def test_how_the_pilot_ended_comes_from_its_own_report(tmp_path, body, status, code):
    args, env = stand_in(tmp_path, body)
    result = wrapper(*args, env=env, user=None)
    assert result.returncode == code, result.stdout + result.stderr
    assert last_line(result) == f"APF-WRAPPER-END status={status} exit={code}"
    argv, nokill = json.loads((tmp_path / "seen").read_text())
    # queue, resource and site from --wrapperwmsqueue, ATLAS's defaults; the pass-through options last (they win)
    assert argv == ["-q", "SITE_X", "-r", "SITE_X", "-s", "SITE_X", "-j", "managed", "-i", "PR",
                    "--pilot-user", "generic", "-w", "generic", "--url", "https://pandaserver.cern.ch", "-p", "25443",
                    "--resource-type", "MCORE", "-p", "443"]
    assert nokill == ("1" if os.geteuid() == 0 else None)  # never the real pilot as root without it
    assert list(Path(env["TMPDIR"]).iterdir()) == []  # the unpacked pilot is removed


def test_no_pilot_in_the_tarball_wrong_version_or_no_tarball(tmp_path):
    args, env = stand_in(tmp_path, "sys.exit(0)")
    empty = tarball(tmp_path, None)
    result = wrapper("--wrapperplugin=panda", "--wrapperwmsqueue=SITE_X", f"--wrapperpiloturl={empty}",
                     env=env, user=None)
    assert result.returncode == 74 and "no pilot.py in the pilot tarball" in result.stdout + result.stderr
    other = tarball(tmp_path, "import sys; sys.exit(0)", version="3.1.0.1")
    result = wrapper("--wrapperplugin=panda", "--wrapperwmsqueue=SITE_X", f"--wrapperpiloturl={other}",
                     "--wrapperpilotversion=3.7.0.36", env=env, user=None)
    assert result.returncode == 74 and "holds pilot 3.1.0.1, not the 3.7.0.36 asked for" in result.stderr
    missing = wrapper("--wrapperplugin=panda", "--wrapperwmsqueue=SITE_X",
                      f"--wrapperpiloturl=file://{tmp_path}/none.tar.gz", env=env, user=None)
    assert missing.returncode == 74 and "cannot fetch the pilot tarball" in missing.stdout
    versioned = wrapper("--wrapperplugin=panda", "--wrapperwmsqueue=SITE_X",
                        f"--wrapperpiloturl=file://{tmp_path}/pilot-{{version}}.tar.gz", env=env, user=None)
    assert versioned.returncode == 66 and "give --wrapperpilotversion" in versioned.stderr
    noqueue = wrapper("--wrapperplugin=panda", env=env, user=None)
    assert noqueue.returncode == 66 and "--wrapperwmsqueue" in noqueue.stderr


def test_a_tarball_path_leaving_its_folder_is_not_unpacked(tmp_path):
    args, env = stand_in(tmp_path, "print('no jobs in PanDA')", evil=True)
    result = wrapper(*args, env=env, user=None)
    assert last_line(result) == f"APF-WRAPPER-END status=empty exit={EMPTY_EXIT}"
    assert not list(tmp_path.rglob("escaped.txt"))


def test_the_wrapper_and_the_factory_agree_on_the_empty_exit_code():
    assert f"EMPTY_EXIT = {EMPTY_EXIT}" in PLUGIN.read_text()
    assert ended_state(EMPTY_EXIT) == "empty" and ended_state(0) == "done" and ended_state(None) == "done"
    assert ended_state(1) == "fault" and ended_state(EMPTY_EXIT, signalled=True) == "fault"


def test_check_config_warns_when_the_wrapper_would_have_nothing_to_run(confdir):
    from tests.conftest import local_queue

    def warnings(arguments: str, **extra: str) -> list[str]:
        confdir.write(local_queue("Q", confdir.spool, **{"executable.arguments": arguments, **extra}))
        return [str(w) for w in confdir.load().warnings if "executable.arguments" in str(w)]

    (cms,) = warnings("--wrappervo=CMS --wrapperwmsqueue=T2_X -s T2_X")
    assert "--wrappervo=CMS: the pilot wrapper has no pilot plugin for this VO" in cms and "exit 70" in cms
    assert "[Q] executable.arguments" in cms
    assert warnings("--wrappervo=ATLAS --wrapperwmsqueue=X") == []  # the panda plugin runs the PanDA pilot
    assert warnings("--wrappervo=CMS -- /opt/cms/pilot.sh") == []  # a pilot command: run as given
    assert warnings("--wrappervo=CMS --wrapperserverurl=file:///spool") == []  # a Local WMS spool
    (unknown,) = warnings("--wrapperplugin=nosuch")
    assert "--wrapperplugin=nosuch: the pilot wrapper has no such pilot plugin" in unknown
