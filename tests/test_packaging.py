"""Packaging: the RPM (built for real with rpmbuild), the systemd unit, the init script and logrotate."""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from autopyfactory import __version__
from tests.conftest import ConfDir, local_queue, wait_for

REPO = Path(__file__).resolve().parent.parent
INIT = REPO / "etc" / "init.d" / "autopyfactory"
# what each target OS (BaseOS + AppStream, no EPEL) provides that the RPM may require
ARCH = os.uname().machine
TARGETS = {
    "el9": {"python(abi) = 3.11", "/usr/bin/python3.11", "/bin/sh", "logrotate", "shadow-utils"},
    "el10": {"python(abi) = 3.12", "/usr/bin/python3.12", "/bin/sh", "logrotate", "shadow-utils"},
}
# EL9's RPM bundles the HTCondor bindings: the OS libraries they link (rpm generates soname requires; the
# copies auditwheel renamed are the RPM's own), with the newest symbol version EL9 has of each family
# (glibc 2.34, GCC 11's libstdc++ and libgcc_s, zlib 1.2.11); glibc also provides rtld(GNU_HASH)
EL9_SONAMES = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "libresolv.so.2", "librt.so.1",
               {"x86_64": "ld-linux-x86-64.so.2", "aarch64": "ld-linux-aarch64.so.1"}.get(ARCH, "ld-linux.so.2"),
               "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"}
EL9_NEWEST = {"GLIBC": (2, 34), "GLIBCXX": (3, 4, 29), "CXXABI": (1, 3, 13), "GCC": (7, 0, 0), "ZLIB": (1, 2, 11)}
INTERPRETER = {"el9": "/usr/bin/python3.11", "el10": "/usr/bin/python3.12"}
# where each target's HTCondor bindings come from: bundled in the RPM, or HTCondor's python3-condor
CONDOR_BUNDLED = {"el9": True, "el10": False}
# the APF 2.4 packages (OSG and PanDA repositories) the RPM replaces; the cloud ones are only removed
APF24_PROVIDED = ["panda-autopyfactory", "autopyfactory-core", "autopyfactory-common", "autopyfactory-proxymanager",
                  "autopyfactory-plugins-condor", "autopyfactory-plugins-panda", "autopyfactory-plugins-local",
                  "autopyfactory-plugins-remote", "autopyfactory-plugins-scheds", "autopyfactory-plugins-monitor",
                  "autopyfactory-panda", "autopyfactory-wms", "autopyfactory-remote", "autopyfactory-atlas"]
APF24_REMOVED = ["autopyfactory-plugins-cloud", "autopyfactory-cloud"]

CONFIG_NOREPLACE = [
    "/etc/apf/factory.conf", "/etc/apf/queues.conf", "/etc/apf/auth.conf", "/etc/apf/monitor.conf",
    "/etc/sysconfig/autopyfactory", "/etc/logrotate.d/autopyfactory",
]


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def rpm_file(rpms, target) -> Path:
    return rpms[target]


def query(rpm_file: Path, *args: str) -> str:
    return subprocess.run(["rpm", "-qp", *args, str(rpm_file)], capture_output=True, text=True, check=True,
                          timeout=60).stdout


def unpack(rpm_file: Path, root: Path) -> Path:
    """The RPM's files as rpm2cpio | cpio extracts them."""
    root.mkdir()
    cpio = subprocess.run(f"rpm2cpio {shlex.quote(str(rpm_file))} | cpio -idm --quiet", shell=True, cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert cpio.returncode == 0, cpio.stderr
    return root


def test_rpm_name_version_and_architecture(rpm_file, target):
    arch = ARCH if CONDOR_BUNDLED[target] else "noarch"  # compiled bindings inside, or pure python
    assert query(rpm_file, "--qf", "%{NAME} %{VERSION} %{RELEASE} %{ARCH}") == \
        f"autopyfactory {__version__} 1.{target} {arch}"


def test_rpm_replaces_the_apf24_packages(rpm_file):
    obsoletes = set(query(rpm_file, "--obsoletes").splitlines())
    provides = set(query(rpm_file, "--provides").splitlines())
    version = query(rpm_file, "--qf", "%{VERSION}-%{RELEASE}")
    for name in APF24_PROVIDED:
        assert f"{name} < 3" in obsoletes and f"{name} = {version}" in provides, name
    for name in APF24_REMOVED:
        assert f"{name} < 3" in obsoletes and not any(p.startswith(name + " ") for p in provides), name


def test_rpm_requires_only_what_the_target_os_provides(rpm_file, target):
    requires = {line.strip() for line in query(rpm_file, "--requires").splitlines()}
    requires = {r for r in requires if not r.startswith(("rpmlib(", "config(autopyfactory)"))}
    libraries = {r for r in requires if re.fullmatch(r"\S+\.so[.\d]*\(\S*\)(\(64bit\))?|rtld\(GNU_HASH\)", r)}
    requires -= libraries
    assert requires <= TARGETS[target], sorted(requires - TARGETS[target])
    if CONDOR_BUNDLED[target]:
        # generated from the bindings' libraries (not named by package: rpmlint's explicit-lib-dependency)
        libraries.discard("rtld(GNU_HASH)")
        sonames = {r.split("(")[0] for r in libraries}
        assert sonames <= EL9_SONAMES, sorted(sonames - EL9_SONAMES)
        assert {"libc.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1"} <= sonames
        for library in libraries:
            version = library.split("(")[1].rstrip(")")
            if version:
                family, _, number = version.rpartition("_")
                assert tuple(map(int, number.split("."))) <= EL9_NEWEST[family], library
    else:
        assert libraries == set()  # pure python
    assert f"python(abi) = {INTERPRETER[target][-4:]}" in requires
    # what it bundles instead, one Provides per line of rpm/bundled.txt
    bundled = {line.split("==")[0]: line.split("==")[1] for line in
               (REPO / "rpm/bundled.txt").read_text().split() if "==" in line}
    provides = set(query(rpm_file, "--provides").splitlines())
    for name, version in bundled.items():
        assert f"bundled(python3dist({name})) = {version}" in provides
    assert {"pluggy", "python-daemon", "requests", "jinja2", "markupsafe", "waitress"} <= set(bundled)
    condor = (REPO / "rpm/htcondor.txt").read_text().split("htcondor==")[1].split()[0]
    assert (f"bundled(python3dist(htcondor)) = {condor}" in provides) == CONDOR_BUNDLED[target]
    weak = query(rpm_file, "--recommends").split()
    assert ("python3-condor" in weak) == (not CONDOR_BUNDLED[target])


def test_rpm_file_list(rpm_file, target):
    files = set(query(rpm_file, "-l").split())
    sitelib = f"/usr/lib/python{INTERPRETER[target][-4:]}/site-packages"
    expected = {
        "/usr/bin/autopyfactory", "/usr/bin/apf",
        "/usr/lib/systemd/system/autopyfactory.service", "/usr/lib/sysusers.d/autopyfactory.conf",
        "/etc/init.d/autopyfactory", f"/usr/share/licenses/autopyfactory-{__version__}/LICENSE",
        f"{sitelib}/autopyfactory/wrappers/apf-wrapper.sh", f"{sitelib}/autopyfactory/wrappers/plugins/local.py",
        f"{sitelib}/autopyfactory/wrappers/apf-slurm-launcher.sh",
        f"{sitelib}/autopyfactory/cli/daemon.py", f"{sitelib}/autopyfactory-{__version__}.dist-info/METADATA",
        "/usr/share/autopyfactory/bundled/pluggy/__init__.py",
        "/var/log/autopyfactory", "/var/log/autopyfactory/pilots", "/var/lib/autopyfactory",
        "/etc/apf/plugins.d", "/var/lib/autopyfactory/credentials", "/usr/share/autopyfactory/site-paths.conf",
        "/usr/share/man/man1/autopyfactory.1.gz", "/usr/share/man/man1/apf.1.gz", *CONFIG_NOREPLACE,
    }
    assert expected <= files, sorted(expected - files)
    # FHS places only; compiled code only in the arch-specific place of the bundled HTCondor bindings
    condor = "/usr/lib64/autopyfactory"
    places = ("/usr/bin/", "/usr/lib/systemd/", "/usr/lib/sysusers.d/", f"{sitelib}/", "/usr/share/autopyfactory",
              "/usr/share/doc/autopyfactory", "/usr/share/licenses/autopyfactory", "/usr/share/man/man1/",
              "/etc/apf", "/etc/init.d/", "/etc/sysconfig/", "/etc/logrotate.d/", "/var/log/autopyfactory",
              "/var/lib/autopyfactory", *((condor,) if CONDOR_BUNDLED[target] else ()))
    assert all(f.startswith(places) for f in files), sorted(f for f in files if not f.startswith(places))
    assert not any("/tests/" in f or f.endswith(".c") for f in files)
    assert all(f.startswith(condor + "/") for f in files if f.endswith(".so") or ".so." in f)
    assert (f"{condor}/bundled/htcondor2/__init__.py" in files) == CONDOR_BUNDLED[target]


def test_rpm_ships_bytecode_for_every_module(rpm_file, target):
    """Compiled at build for the target interpreter, so running as root writes no .pyc nobody owns."""
    tag = f"cpython-{INTERPRETER[target][-4:].replace('.', '')}"
    if not os.path.exists(INTERPRETER[target]):
        pytest.skip(f"{INTERPRETER[target]} is not on this build host: the {target} RPM is built without bytecode "
                    "here (on EL the interpreter is always there)")
    files = set(query(rpm_file, "-l").split())
    modules = [f for f in files if f.endswith(".py") and "/usr/bin/" not in f and "/wrappers/" not in f]
    assert len(modules) > 100
    for module in modules:
        directory, name = module.rsplit("/", 1)
        for suffix in ("pyc", "opt-1.pyc"):
            assert f"{directory}/__pycache__/{name[:-3]}.{tag}.{suffix}" in files, module
    assert not any(".cpython-" in f and tag not in f for f in files)  # no bytecode of another python


def test_bundled_library_files_are_not_executable(rpm_file):
    modes = dict(line.rsplit(" ", 1) for line in
                 query(rpm_file, "--qf", "[%{FILENAMES} %{FILEMODES:perms}\n]").splitlines())
    shared = [f for f in modes if f.startswith("/usr/share/autopyfactory/bundled/") and not modes[f].startswith("d")]
    assert shared and all(modes[f] == "-rw-r--r--" for f in shared), [(f, modes[f]) for f in shared
                                                                       if modes[f] != "-rw-r--r--"][:5]


def test_bundled_library_modules_have_no_shebang(rpms, target, tmp_path):
    """Modules of the bundled libraries are not scripts: a shebang would ask for an exec bit (rpmlint's
    non-executable-script on prometheus_client, requests/certs.py and htcondor2's _utils before)."""
    root = unpack(rpms[target], tmp_path / "root")
    modules = [p for d in ("usr/share/autopyfactory/bundled", "usr/lib64/autopyfactory/bundled")
               for p in (root / d).rglob("*.py")]
    assert len(modules) > 100
    assert [str(p.relative_to(root)) for p in modules if p.read_bytes().startswith(b"#!")] == []


RPMLINT_CONFIG = REPO / "rpm/rpmlint.toml"
RPMLINTRC = REPO / "rpm/autopyfactory.rpmlintrc"


def rpmlint(*args: str) -> subprocess.CompletedProcess:
    if not shutil.which("rpmlint"):
        pytest.fail("rpmlint is missing: tests/services/rpm.sh installs it (make test runs it)")
    # EL's settings from rpm/rpmlint.toml and nothing of the host's own /etc/xdg/rpmlint
    return subprocess.run(["rpmlint", "-c", str(RPMLINT_CONFIG), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CONFIG_DISABLE_AUTOLOADING": "1"})


def test_rpmlint_reports_only_what_the_allow_list_explains(rpms):
    """rpmlint on both RPMs: each message is on rpm/autopyfactory.rpmlintrc (with its reason) and each
    entry there is still needed; everything else is fixed in the spec."""
    text = RPMLINTRC.read_text()
    allowed = re.findall(r'^addFilter\("(.*)"\)$', text, re.M)
    assert allowed and len(allowed) <= 12, "the allow-list is meant to be short"
    for block in text.split("\n\n"):
        if "addFilter(" in block:
            assert block.lstrip().startswith("#"), f"an entry without its reason: {block}"
    reported = []
    for rpm_file in rpms.values():
        raw = rpmlint(str(rpm_file))
        messages = re.findall(r"^autopyfactory\.\S+: [EW]: .*$", raw.stdout, re.M)
        assert messages or "0 errors, 0 warnings" in raw.stdout, raw.stdout + raw.stderr
        reported += messages
    unexplained = [m for m in reported if not any(re.search(f, m) for f in allowed)]
    assert unexplained == []
    unneeded = [f for f in allowed if not any(re.search(f, m) for m in reported)]
    assert unneeded == []
    # rpmlint itself, with the allow-list: nothing left, for each RPM
    for target, rpm_file in rpms.items():
        linted = rpmlint("-r", str(RPMLINTRC), "--ignore-unused-rpmlintrc", str(rpm_file))
        assert linted.returncode == 0 and " 0 errors, 0 warnings" in linted.stdout, (target, linted.stdout)
    # what the entry for rpmlint 2.4.0's man page bug leaves to this test: a page for every command
    for rpm_file in rpms.values():
        files = set(query(rpm_file, "-l").split())
        commands = [f.rsplit("/", 1)[1] for f in files if f.startswith("/usr/bin/")]
        assert commands and all(f"/usr/share/man/man1/{c}.1.gz" in files for c in commands), commands


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


def test_rpm_ownership_and_scripts(rpm_file, target):
    owners = dict(line.split(" ", 1) for line in
                  query(rpm_file, "--qf", "[%{FILENAMES} %{FILEUSERNAME}:%{FILEMODES:perms}\n]").splitlines())
    assert owners["/var/log/autopyfactory"] == "autopyfactory:drwxr-xr-x"
    assert owners["/var/lib/autopyfactory"] == "autopyfactory:drwxr-x---"
    assert owners["/etc/apf/auth.conf"] == "root:-rw-r-----"
    scripts = query(rpm_file, "--scripts")
    assert "systemctl" in scripts and "try-restart" in scripts or "systemd-update-helper" in scripts
    # on EL9 and EL10 alike the user is made in %pre, before the files that are its and the chown in %post
    # (EL10's rpm may also make it from sysusers.d; the useradd is skipped when it exists)
    pre = scripts.split("preinstall scriptlet")[1].split("scriptlet")[0]
    post = scripts.split("postinstall scriptlet")[1].split("scriptlet")[0]
    assert "useradd -r" in pre and "getent passwd autopyfactory" in pre
    assert "chown autopyfactory" in post


def test_rpm_payload_runs_a_cycle_with_its_interpreter(rpms, target, tmp_path):
    interpreter = INTERPRETER[target]
    if not os.path.exists(interpreter):
        pytest.skip(f"{interpreter} (the {target} RPM's interpreter) is not on this build host")
    root = unpack(rpms[target], tmp_path / "root")
    command = root / "usr/bin/autopyfactory"
    assert command.read_text().splitlines()[0] == f"#!{interpreter} -s"
    # -S: no site-packages of this host at all; the payload alone must carry everything
    version = subprocess.run([interpreter, "-S", str(command), "--version"], capture_output=True, text=True,
                             timeout=60)
    assert version.stdout.strip() == f"autopyfactory {__version__}", version.stderr
    (tmp_path / "conf").mkdir()
    confdir = ConfDir(tmp_path / "conf")
    path = confdir.write(local_queue("RPM", confdir.spool))
    confdir.work("RPM", 1)
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "APF_WRAPPER_DIR")}
    ran = subprocess.run([interpreter, "-S", str(command), "--conf", str(path), "--foreground", "--cycles", "1"],
                         capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "queue RPM cycle 1: wms ready=1" in ran.stdout and "; submitted 1" in ran.stdout
    jdl = json.loads(next(confdir.logs.rglob("*.jdl")).read_text())
    assert jdl["argv"][0].startswith(str(root / "usr/lib")) and jdl["argv"][0].endswith("wrappers/apf-wrapper.sh")
    # the shipped factory.conf is the one in etc/apf, and the daemon refuses it until it is edited
    assert (root / "etc/apf/factory.conf").read_text() == (REPO / "etc/apf/factory.conf").read_text()
    assert "[DEMO]" not in (root / "etc/apf/queues.conf").read_text()


def test_systemd_analyze_verify_finds_nothing_wrong_with_the_unit_as_installed(rpms, target, tmp_path):
    """systemd-analyze verify on the unit the RPM installs, with the RPM's files as the system's: ExecStart's
    command and the pages Documentation= names (man:autopyfactory(1), man:apf(1)) must be there."""
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: tests/services/systemd.sh installs it (make test runs it)")
    root = unpack(rpms[target], tmp_path / "root")
    assert (root / "usr/lib/systemd/system/autopyfactory.service").read_text() == \
        (REPO / "etc/systemd/autopyfactory.service").read_text()
    # what the OS brings besides the RPM: systemd's own units (the unit's dependencies), ExecReload's
    # /bin/kill, and /bin -> usr/bin as on EL
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True, dirs_exist_ok=True)
    shutil.copy2("/usr/bin/kill", root / "usr/bin/kill")
    (root / "bin").symlink_to("usr/bin")

    def verify(manpath: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["systemd-analyze", "verify", f"--root={root}", "autopyfactory.service"],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "MANPATH": str(manpath)})

    verified = verify(root / "usr/share/man")
    assert verified.returncode == 0 and verified.stdout + verified.stderr == "", verified.stderr
    # verify does look the pages up: without the RPM's it names both
    missing = verify(tmp_path / "no-pages")
    assert missing.returncode != 0
    assert "'man autopyfactory(1)' failed" in missing.stderr and "'man apf(1)' failed" in missing.stderr, missing.stderr


def test_logrotate_signals_instead_of_restarting():
    text = (REPO / "etc/logrotate.d/autopyfactory").read_text()
    assert "kill -USR2" in text and "HUP" not in text  # reopen the log, never reload the queues
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


CONDOR_QUEUES = """\
[DEFAULT]
wmsstatusplugin = Local
wmsstatus.local.spooldir = {spool}
batchstatusplugin = Condor
executable.arguments = --wrappervo=ATLAS --wrapperwmsqueue=PANDA_SITE

[LOCAL]
batchsubmitplugin = CondorLocal

[CE]
batchsubmitplugin = CondorCE
batchsubmit.condorce.gridresource = ce.example.org

[ARC]
batchsubmitplugin = CondorARC
batchsubmit.condorarc.gridresource = arc.example.org

[SSH]
batchsubmitplugin = CondorSSH
batchsubmit.condorssh.batch = slurm
batchsubmit.condorssh.user = apf
batchsubmit.condorssh.host = login.example.org
"""
# run by the payload's interpreter: each queue's submit description as production builds it (no schedd)
BUILD_SUBMITS = """\
import json, sys
root, conf = sys.argv[1:3]
sys.path[:0] = [root + "/usr/share/autopyfactory/bundled", root + "/usr/lib/python3.11/site-packages",
                root + "/usr/lib64/autopyfactory/bundled"]
import htcondor2
from autopyfactory.config import load
from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
config = load(conf)
context = FactoryContext(config)
context.credentials = CredentialService(context)
built = {"bindings": htcondor2.__file__}
for name, queue in config.queues.items():
    plugin = context.registry.get("batchsubmit", queue.values["batchsubmitplugin"])(queue, context)
    sub = plugin.submit_object(context.logdir(name))
    built[name] = {"type": type(sub).__module__ + "." + type(sub).__name__, "universe": sub["universe"],
                   "grid_resource": sub.get("grid_resource", ""), "text": str(sub)}
print(json.dumps(built))
"""


def test_rpm_payload_runs_condor_queues_with_its_interpreter(rpms, target, tmp_path):
    """check-config on every Condor plugin's queue, then a real htcondor2.Submit each, from the payload alone."""
    interpreter = INTERPRETER[target]
    if not CONDOR_BUNDLED[target]:
        pytest.skip(f"the {target} RPM takes the bindings from HTCondor's python3-condor, not from its payload")
    if not os.path.exists(interpreter):
        pytest.skip(f"{interpreter} (the {target} RPM's interpreter) is not on this build host")
    root = unpack(rpms[target], tmp_path / "root")
    (tmp_path / "conf").mkdir()
    confdir = ConfDir(tmp_path / "conf")
    path = confdir.write(CONDOR_QUEUES.format(spool=confdir.spool))
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "APF_WRAPPER_DIR")}
    check = subprocess.run([interpreter, "-S", str(root / "usr/bin/apf"), "check-config", "--json", "--conf", str(path)],
                           capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path)
    # before the bindings were bundled: every queue here failed with "needs the htcondor2 module"
    assert check.returncode == 0, check.stdout + check.stderr
    assert "htcondor2" not in check.stderr
    queues = json.loads(check.stdout)["queues"]
    assert {name: q["values"]["batchsubmitplugin"] for name, q in queues.items()} == {
        "LOCAL": "CondorLocal", "CE": "CondorCE", "ARC": "CondorARC", "SSH": "CondorSSH"}
    assert all(q["enabled"] for q in queues.values())
    built = subprocess.run([interpreter, "-S", "-c", BUILD_SUBMITS, str(root), str(path)], capture_output=True,
                           text=True, timeout=120, env=environment, cwd=tmp_path)
    assert built.returncode == 0, built.stderr[-3000:]
    submits = json.loads(built.stdout)
    assert submits.pop("bindings").startswith(str(root / "usr/lib64/autopyfactory/bundled/htcondor2/"))
    assert {name: (s["type"], s["universe"], s["grid_resource"]) for name, s in submits.items()} == {
        "LOCAL": ("htcondor2._submit.Submit", "vanilla", ""),
        "CE": ("htcondor2._submit.Submit", "grid", "condor ce.example.org ce.example.org:9619"),
        "ARC": ("htcondor2._submit.Submit", "grid", "arc https://arc.example.org:443/arex"),
        "SSH": ("htcondor2._submit.Submit", "grid", "batch slurm apf@login.example.org"),
    }
    for name, submit in submits.items():
        assert f'+APF_QUEUE = "{name}"' in submit["text"] or f'MY.APF_QUEUE = "{name}"' in submit["text"], submit
        assert str(root / "usr/lib/python3.11/site-packages/autopyfactory/wrappers/apf-wrapper.sh") in submit["text"]


def test_rpm_launchers_run_the_console_scripts_of_setup_cfg(rpms, tmp_path):
    """The RPM writes its own launchers: they must start what pip's console scripts start."""
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in parser["options.entry_points"]["console_scripts"].split("\n") if line)
    root = unpack(rpms["el10"], tmp_path / "root")
    for command, target in scripts.items():
        module, function = target.split(":")
        assert f"from {module} import {function}" in (root / "usr/bin" / command).read_text(), command
