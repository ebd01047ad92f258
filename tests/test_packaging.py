"""Packaging: the RPM (built for real with rpmbuild), the systemd unit, the init script and logrotate."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from autopyfactory import __version__
from tests.conftest import local_queue, wait_for

REPO = Path(__file__).resolve().parent.parent
INIT = REPO / "etc" / "init.d" / "autopyfactory"
RPM_NAME = f"autopyfactory-{__version__}-1.noarch.rpm"

CONFIG_NOREPLACE = [
    "/etc/apf/factory.conf", "/etc/apf/queues.conf", "/etc/apf/auth.conf", "/etc/apf/monitor.conf",
    "/etc/sysconfig/autopyfactory", "/etc/logrotate.d/autopyfactory",
]


@pytest.fixture(scope="module")
def rpm_file(tmp_path_factory) -> Path:
    if not shutil.which("rpmbuild"):
        pytest.fail("rpmbuild is missing: tests/services/rpm.sh installs it (make test runs it)")
    topdir = tmp_path_factory.mktemp("rpmbuild")
    result = subprocess.run([str(REPO / "rpm" / "build-rpm.sh"), str(topdir)], capture_output=True, text=True,
                            env={**os.environ, "APF_RPM_PYTHON": sys.executable}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    path = topdir / "RPMS" / "noarch" / RPM_NAME
    assert path.exists(), result.stdout[-2000:]
    # building must leave the building python's own installation alone
    assert (Path(sys.executable).parent / "autopyfactory").exists()
    return path


def query(rpm_file: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm_file)], capture_output=True, text=True, check=True,
                          timeout=60).stdout


@pytest.fixture(scope="module")
def payload(rpm_file, tmp_path_factory) -> Path:
    """The RPM's files unpacked (rpm2archive + tarfile: no cpio here)."""
    work = tmp_path_factory.mktemp("payload")
    copy = work / rpm_file.name
    shutil.copy(rpm_file, copy)
    subprocess.run(["rpm2archive", str(copy)], check=True, timeout=60)
    root = work / "root"
    with tarfile.open(str(copy) + ".tgz") as archive:
        archive.extractall(root, filter="data")
    return root


def test_rpm_is_noarch_with_the_package_version(rpm_file):
    assert query(rpm_file, "--qf", "%{NAME} %{VERSION} %{ARCH}") == f"autopyfactory {__version__} noarch"


def test_rpm_file_list(rpm_file):
    files = set(query(rpm_file, "-l").split())
    expected = {
        "/usr/bin/autopyfactory", "/usr/bin/apf",
        "/usr/lib/systemd/system/autopyfactory.service", "/etc/init.d/autopyfactory",
        "/usr/libexec/autopyfactory/apf-wrapper.sh", "/usr/libexec/autopyfactory/apf_wrapper.py",
        "/usr/libexec/autopyfactory/plugins/local.py", "/usr/libexec/autopyfactory/plugins/exec.py",
        "/var/log/autopyfactory", "/var/log/autopyfactory/pilots", "/var/lib/autopyfactory",
        "/etc/apf/plugins.d", *CONFIG_NOREPLACE,
    }
    assert expected <= files, sorted(expected - files)
    modules = {f for f in files if "/site-packages/autopyfactory/" in f}
    for module in ("cli/daemon.py", "factory.py", "credentials.py", "services/cleaner.py", "plugins/auth/x509.py"):
        assert any(f.endswith("/site-packages/autopyfactory/" + module) for f in modules), module
    assert not any("__pycache__" in f or "/tests/" in f for f in files)


def test_rpm_config_files_are_noreplace(rpm_file):
    flags = {}
    for line in query(rpm_file, "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]").splitlines():
        name, _, flag = line.partition(" ")
        flags[name] = flag.strip()
    for path in CONFIG_NOREPLACE:
        assert "c" in flags[path] and "n" in flags[path], (path, flags[path])
    # code is never config
    assert flags["/usr/bin/autopyfactory"] == "" and flags["/etc/init.d/autopyfactory"] == ""
    configs = set(query(rpm_file, "--configfiles").split())
    assert set(CONFIG_NOREPLACE) <= configs


def test_rpm_ownership_and_scripts(rpm_file):
    owners = dict(line.split(" ", 1) for line in
                  query(rpm_file, "--qf", "[%{FILENAMES} %{FILEUSERNAME}:%{FILEMODES:perms}\n]").splitlines())
    assert owners["/var/log/autopyfactory"] == "autopyfactory:drwxr-xr-x"
    assert owners["/var/lib/autopyfactory"] == "autopyfactory:drwxr-x---"
    assert owners["/etc/apf/auth.conf"] == "root:-rw-r-----"
    assert owners["/usr/libexec/autopyfactory/apf-wrapper.sh"] == "root:-rwxr-xr-x"
    scripts = query(rpm_file, "--scripts")
    pre = scripts.split("preinstall scriptlet")[1].split("scriptlet")[0]
    assert "useradd -r" in pre and "groupadd -r autopyfactory" in pre
    assert "try-restart" in scripts and "condrestart" in scripts
    requires = query(rpm_file, "--requires")
    assert "python3-daemon >= 3.0" in requires and "python3-pluggy >= 1.5" in requires


def test_rpm_payload_runs(payload, tmp_path):
    shebang = (payload / "usr/bin/autopyfactory").read_text().splitlines()[0]
    assert shebang == "#!/usr/bin/python3 -s"
    sitelib = next(payload.glob("usr/lib/python3*/site-packages"))
    # the packaged code imports and answers, from the payload alone
    result = subprocess.run([sys.executable, "-I", "-c",
                             f"import sys; sys.path[:0] = [{str(sitelib)!r}] + [p for p in {sys.path!r} if 'site-packages' in p]; "
                             "import autopyfactory.cli.daemon as d; print(d.__file__); d.main(['--version'])"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.startswith(str(sitelib)), result.stderr
    assert f"autopyfactory {__version__}" in result.stdout
    # the installed wrapper runs from /usr/libexec (plugins beside it)
    wrapper = payload / "usr/libexec/autopyfactory/apf-wrapper.sh"
    ran = subprocess.run(["sh", str(wrapper), "--wrappermode=test"], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if not k.startswith("APF_")})
    assert ran.returncode == 0 and ran.stdout.strip().endswith("APF-WRAPPER-END status=test exit=0"), ran.stderr
    # the shipped factory.conf is the one in etc/apf
    assert (payload / "etc/apf/factory.conf").read_text() == (REPO / "etc/apf/factory.conf").read_text()


def test_systemd_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(REPO / "etc/systemd/autopyfactory.service")
    service = unit["Service"]
    assert service["Type"] == "forking"
    assert service["PIDFile"] in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert "--foreground" not in service["ExecStart"]
    assert service["EnvironmentFile"] == "-/etc/sysconfig/autopyfactory"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    for word in service["ExecStart"].split():
        if word.startswith("--"):
            assert word in ("--conf", "--pidfile", "--log", "--loglevel", "--runas"), word


def test_logrotate_signals_instead_of_restarting():
    text = (REPO / "etc/logrotate.d/autopyfactory").read_text()
    assert "kill -HUP" in text
    assert "restart" not in text.replace("instead of restarting", "").replace("never restarted", "")
    assert "copytruncate" not in text


def test_sysconfig_is_plain_shell_assignments():
    result = subprocess.run(["sh", "-c", ". ./etc/sysconfig/autopyfactory && echo \"$APF_CONF|$APF_USER|$APF_OPTIONS\""],
                            capture_output=True, text=True, cwd=REPO, timeout=30)
    assert result.stdout.strip() == "/etc/apf/factory.conf|autopyfactory|"


# ---------------------------------------------------------------- the init script


@pytest.mark.parametrize("shell", [s for s in ("sh", "bash", "dash") if shutil.which(s)])
def test_init_script_syntax(shell):
    assert subprocess.run([shell, "-n", str(INIT)], timeout=30).returncode == 0


def test_init_script_start_status_reload_condrestart_stop(confdir, tmp_path):
    confdir.write(local_queue("Q1", confdir.spool))
    pidfile = tmp_path / "run" / "apf.pid"
    log = tmp_path / "apf.log"
    bindir = Path(sys.executable).parent
    sysconfig = tmp_path / "sysconfig"
    sysconfig.write_text(
        f"APF_BIN={bindir / 'autopyfactory'}\nAPF_CONF={confdir.root / 'factory.conf'}\nAPF_USER=\n"
        f"APF_LOG={log}\nAPF_LOGLEVEL=debug\nAPF_PIDFILE={pidfile}\nAPF_STOP_TIMEOUT=60\n"
        f"LOCKFILE={tmp_path / 'lock'}\n")
    env = {**os.environ, "APF_SYSCONFIG": str(sysconfig), "PYTHONPATH": str(REPO)}

    def init(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(["sh", str(INIT), action], capture_output=True, text=True, env=env, timeout=180)

    def logged(text: str) -> bool:
        return log.exists() and text in log.read_text()

    assert init("status").returncode == 3
    assert init("reload").returncode == 7
    assert init("condrestart").returncode == 0 and not pidfile.exists()
    started = init("start")
    pid = int(pidfile.read_text())
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "OK" in started.stdout
        status = init("status")
        assert status.returncode == 0 and f"pid {pid}" in status.stdout
        assert init("start").returncode == 0 and int(pidfile.read_text()) == pid  # already running
        wait_for(lambda: logged("queue Q1 cycle 1"), "the first cycle")
        assert init("reload").returncode == 0
        wait_for(lambda: logged("reload applied"), "the reload")
        restarted = init("condrestart")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        new_pid = int(pidfile.read_text())
        assert new_pid != pid and not Path(f"/proc/{pid}").exists()
        pid = new_pid
        stopped = init("stop")
        assert stopped.returncode == 0 and "OK" in stopped.stdout
        assert not Path(f"/proc/{pid}").exists() and not pidfile.exists()
        assert init("status").returncode == 3
        assert init("stop").returncode == 0
        # a pidfile left behind by a dead daemon
        pidfile.write_text(f"{pid}\n")
        assert init("status").returncode == 1
        assert init("bogus").returncode == 2
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)
