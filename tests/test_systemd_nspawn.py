"""The shipped unit under a real systemd: the EL9 RPM installed into a booted Debian 12 root (tests/nspawn.py).

Debian 12's python3.11 is the EL9 RPM's interpreter, so the RPM installs as it is (``rpm -i``, its
scriptlets run: the user is created, the admin token made) and the shipped unit runs the shipped
launcher. The site's part is done as an operator would: edit /etc/apf, put credentials in place, copy
the shipped site-paths.conf drop-in. The grid-path table runs inside the unit as a Local pilot
(tests/gridprobe.py), so it has the unit's user, mount namespace and system call filter.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from autopyfactory import __version__
from tests import nspawn

REPO = Path(__file__).resolve().parent.parent
UNIT = "autopyfactory.service"
RPM = f"autopyfactory-{__version__}-1.el9.rpm"

pytestmark = pytest.mark.skipif(bool(nspawn.unavailable()), reason=nspawn.unavailable() or "-")

QUEUES = """\
[PROBE]
wmsqueue = PROBE
wmsstatusplugin = Local
wmsstatus.local.spooldir = /var/lib/autopyfactory/spool
batchstatusplugin = Local
batchsubmitplugin = Local
schedplugin = Ready
apfqueue.sleep = 3600
executable = /usr/local/libexec/apf-gridprobe
"""
AUTH = """\
[production]
plugin = Token
token.tokenfile = /var/lib/autopyfactory/credentials/pilot.token
"""
# what each step of tests/gridprobe.py must give from inside the hardened unit
GRID_PATHS = {
    "user": "autopyfactory",
    "inside the unit": "ok",
    "read a CA in /etc/grid-security/certificates": "ok",
    "read /etc/grid-security/hostcert.pem": "ok",
    # the key stays root's; the service reads it only through one of the documented means below
    "read /etc/grid-security/hostkey.pem (root's 0400)": "PermissionError: Permission denied",
    "read the host key handed by LoadCredential=": "ok",
    "read /etc/grid-security/robotkey.pem (0400 root, ACL for the user)": "ok",
    "write a proxy in the credentials directory": "ok",
    "read the site's HTCondor client configuration": "ok",
    "read the site's Slurm client configuration": "ok",
    "load the HTCondor bindings (config, submit description)": "ok",  # with ProcSubset=pid, ProtectProc=
    "run condor_submit": "ok",
    "run sbatch": "ok",
    "reach the schedd's socket": "ok",
    "reach the schedd's port": "ok",
    "reach munge's socket": "ok",
    "write a proxy in /tmp": "ok",  # but in the unit's own /tmp: see the test
    "write a pilot log beside this one": "ok",
    "write the site's log directory (drop-in)": "ok",
    "write elsewhere in /home": "OSError: Read-only file system",
    "write /etc/apf": "OSError: Read-only file system",
    "filtered call mount": "EPERM",
    "filtered call reboot": "EPERM",
    "filtered call swapon": "EPERM",
}
STAND_IN = "#!/bin/sh\n# stands for {name}: reads what the real one reads\nset -e\ncat {files} >/dev/null\n"


def jwt(expires: float) -> str:
    def part(claims: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'exp': int(expires), 'sub': 'pilot'})}.c2lnbmF0dXJl"


def install_as_a_site(box: nspawn.Container) -> None:
    """rpm -i, then what an operator does: edit /etc/apf, credentials, the site's tools, the drop-in."""
    # --nodeps: Debian's rpm database knows none of the EL packages the RPM requires (python3.11 is there)
    box.run("rpm", "-i", "--nodeps", "--force-debian", f"/mnt/apf/{RPM}")
    box.run("sed", "-i", "-e", "s/^factoryId = .*/factoryId = nspawn-test/",
            "-e", "s|^baseLogDirUrl = .*|baseLogDirUrl = http://localhost:25880/logs|", "/etc/apf/factory.conf")
    box.write("/etc/apf/queues.conf", QUEUES)
    box.write("/etc/apf/auth.conf", AUTH, "0640")
    box.run("chgrp", "autopyfactory", "/etc/apf/auth.conf")
    box.write("/usr/local/libexec/apf-gridprobe", (REPO / "tests/gridprobe.py").read_text(), "0755")
    box.write("/var/lib/autopyfactory/spool/PROBE/work-1.json", '{"command": ["true"]}\n')
    box.write("/var/lib/autopyfactory/credentials/pilot.token", jwt(time.time() + 86400) + "\n", "0600")
    box.run("chown", "-R", "autopyfactory:autopyfactory", "/var/lib/autopyfactory/spool",
            "/var/lib/autopyfactory/credentials/pilot.token")
    # the grid: CAs and host certificate readable by all, keys root's; an ACL gives the robot key to the user
    box.write("/etc/grid-security/certificates/5f2a1e0d.0", "CA\n")
    box.write("/etc/grid-security/hostcert.pem", "CERT\n")
    box.write("/etc/grid-security/hostkey.pem", "KEY\n", "0400")
    box.write("/etc/grid-security/robotkey.pem", "ROBOT KEY\n", "0400")
    box.run("setfacl", "-m", "u:autopyfactory:r", "/etc/grid-security/robotkey.pem")
    box.write("/etc/condor/condor_config", "CONDOR_HOST = localhost\n")
    box.write("/etc/slurm/slurm.conf", "ClusterName=test\n")
    box.write("/usr/local/bin/condor_submit", STAND_IN.format(
        name="condor_submit", files="/etc/condor/condor_config /var/lib/autopyfactory/credentials/x509up_probe"),
        "0755")
    box.write("/usr/local/bin/sbatch", STAND_IN.format(name="sbatch", files="/etc/slurm/slurm.conf"), "0755")
    box.run("install", "-d", "-o", "autopyfactory", "-g", "autopyfactory", "/home/autopyfactory/factory/logs")
    # the shipped drop-in, with the two lines this site needs uncommented
    box.run("install", "-d", "/etc/systemd/system/autopyfactory.service.d")
    box.run("sh", "-c", "sed -e 's|^#ReadWritePaths=/home/|ReadWritePaths=/home/|' "
            "-e 's|^#LoadCredential=hostkey.pem:|LoadCredential=hostkey.pem:|' "
            "/usr/share/autopyfactory/site-paths.conf > /etc/systemd/system/autopyfactory.service.d/site-paths.conf")
    # the schedd and munge, outside the unit
    box.run("systemd-run", "--unit=fake-schedd", "/usr/bin/python3", "/usr/local/libexec/apf-gridprobe", "--serve")
    box.wait(lambda: box.run("test", "-S", "/run/munge/munge.socket.2", check=False).returncode == 0,
             "the schedd and munge stand-ins")
    # a grid host's own name resolves; the container has no DNS (HTCondor's config would wait for it, 2 min)
    box.run("sh", "-c", 'printf "127.0.0.1 localhost\\n::1 localhost\\n127.0.1.1 %s\\n" "$(hostname)" > /etc/hosts')
    # the container's only network is lo: nothing to wait for before network-online.target (2 min otherwise)
    box.run("systemctl", "mask", "systemd-networkd-wait-online.service")
    box.run("systemctl", "daemon-reload")


@pytest.fixture(scope="module")
def box(rpms, tmp_path_factory):
    why = nspawn.missing()
    if why:
        pytest.fail(f"{why}: tests/services/nspawn.sh installs it (make test runs it)")
    work = tmp_path_factory.mktemp("nspawn")
    share = work / "share"
    share.mkdir()
    shutil.copy(rpms["el9"], share / RPM)
    with nspawn.booted(f"apf-test-{os.getpid()}", work, {"/mnt/apf": share}) as container:
        install_as_a_site(container)
        yield container


def test_the_rpm_scriptlets_made_the_user_before_giving_it_files(box):
    assert box.run("getent", "passwd", "autopyfactory").stdout.split(":")[5] == "/var/lib/autopyfactory"
    owners = box.run("stat", "-c", "%n %U %a", "/etc/apf/admin.token", "/var/lib/autopyfactory",
                     "/var/lib/autopyfactory/credentials", "/var/log/autopyfactory/pilots").stdout.splitlines()
    assert owners == ["/etc/apf/admin.token autopyfactory 600", "/var/lib/autopyfactory autopyfactory 750",
                      "/var/lib/autopyfactory/credentials autopyfactory 750",
                      "/var/log/autopyfactory/pilots autopyfactory 755"]
    assert len(box.run("cat", "/etc/apf/admin.token").stdout.strip()) == 64


def test_unit_is_active_only_after_ready_then_reloads_and_stops(box):
    box.run("systemctl", "start", UNIT)  # returns once systemd has READY=1, or fails
    try:
        state = box.show(UNIT, "ActiveState", "SubState", "StatusText", "MainPID", "NotifyAccess")
        # STATUS= comes in the same message as READY=1: systemd has it once the unit is active
        assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
        assert state["StatusText"] == "running 1 queue(s)", state
        pid = state["MainPID"]
        assert box.run("cat", f"/proc/{pid}/comm").stdout.strip() in ("autopyfactory", "python3.11")
        journal = box.journal(UNIT)
        # systemd's "Started" comes after the daemon's last line before READY=1 (systemd 252 names the unit)
        assert journal.index("started with 1 queue(s): PROBE") < journal.index(f"Started {UNIT}"), journal

        box.run("systemctl", "reload", UNIT)
        box.wait(lambda: "reload applied" in box.journal(UNIT), "the reload to be applied")
        box.wait(lambda: box.show(UNIT, "ActiveState")["ActiveState"] == "active", "active after the reload")
        assert box.show(UNIT, "MainPID")["MainPID"] == pid  # reloaded live, not restarted
    finally:
        box.run("systemctl", "stop", UNIT)
    state = box.show(UNIT, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    # stopped by its own SIGTERM handling: exit 0, never the SIGKILL after TimeoutStopSec
    assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0",
                     "ExecMainCode": "1"}, state


def test_without_ready_the_unit_never_becomes_active(box):
    # the same daemon, not told where to notify: systemd never hears READY=1 and the start times out
    box.write("/run/systemd/system/autopyfactory.service.d/no-notify.conf",
              "[Service]\nUnsetEnvironment=NOTIFY_SOCKET\nTimeoutStartSec=5\nRestart=no\n")
    box.run("systemctl", "daemon-reload")
    try:
        started = box.run("systemctl", "start", UNIT, check=False)
        state = box.show(UNIT, "ActiveState", "Result")
        assert started.returncode != 0 and state == {"ActiveState": "failed", "Result": "timeout"}, state
    finally:
        box.run("rm", "/run/systemd/system/autopyfactory.service.d/no-notify.conf")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "reset-failed", UNIT, check=False)


def test_grid_paths_from_inside_the_unit(box):
    # a fresh start: neither the pilots of the tests before nor what the factory's store remembers of them
    # (a pilot killed by an earlier stop counts as a fault, and faults hold a queue back)
    box.run("rm", "-rf", "/var/log/autopyfactory/pilots/", "/var/lib/autopyfactory/apf.sqlite")
    box.run("install", "-d", "-o", "autopyfactory", "-g", "autopyfactory", "/var/log/autopyfactory/pilots")
    box.run("systemctl", "start", UNIT)
    try:
        def probe_log() -> str:
            return box.run("sh", "-c", "cat /var/log/autopyfactory/pilots/*/PROBE/*.out", check=False).stdout

        try:
            box.wait(lambda: probe_log().rstrip().endswith("}"), "the probe pilot's log")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the unit's journal:\n{box.journal(UNIT)[-3000:]}") from None
        steps = json.loads(probe_log())
        assert steps == GRID_PATHS
        # the proxy is where HTCondor's daemons read it: the gridmanager (the job's owner) and the schedd (root)
        box.run("runuser", "-u", "autopyfactory", "--", "cat", "/var/lib/autopyfactory/credentials/x509up_probe")
        box.run("cat", "/var/lib/autopyfactory/credentials/x509up_probe")
        # what the pilot wrote in /tmp stayed in the unit's own /tmp: why proxies must not live there
        uid = box.run("id", "-u", "autopyfactory").stdout.strip()
        assert box.run("test", "-e", f"/tmp/x509up_u{uid}", check=False).returncode == 1
        # the factory read its token from the credentials directory too
        assert "credential production: ok" in box.journal(UNIT)
    finally:
        box.run("systemctl", "stop", UNIT)


REFUSED_CALL = """\
import urllib.error, urllib.request
try:
    urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:25880/api/v1/admin/reload", method="POST"))
except urllib.error.HTTPError as answer:
    print(answer.code)
"""


def test_the_journal_files_each_line_at_its_priority_and_apf_log_reads_it(box):
    # issue 23: the daemon's <N> prefixes make journalctl -p filter; apf log reads the unit's journal
    box.run("systemctl", "start", UNIT)
    try:
        assert box.run("python3", "-c", REFUSED_CALL).stdout.strip() == "401"  # the daemon logs a warning
        box.wait(lambda: "refused" in box.journal(UNIT), "the refused call in the journal")

        def ours(priority: str) -> list[str]:
            out = box.run("journalctl", "--no-pager", "-o", "cat", "-u", UNIT, "-p", priority).stdout
            return [line for line in out.splitlines() if line.split(" ", 1)[0] in
                    ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")]

        warnings, infos = ours("warning"), ours("info")
        assert any("refused" in line for line in warnings), warnings
        assert all(line.startswith(("WARNING ", "ERROR ", "CRITICAL ")) for line in warnings), warnings
        assert any(line.startswith("INFO ") and "started with 1 queue(s)" in line for line in infos), infos
        assert not any(line.startswith("<") for line in infos)  # journald took the prefix off
        fields = [json.loads(line) for line in box.run("journalctl", "--no-pager", "-o", "json", "-u", UNIT).stdout
                  .splitlines()]
        refused = next(f for f in fields if "refused" in str(f.get("MESSAGE")))
        assert refused["PRIORITY"] == "4", refused

        shown = box.run("apf", "log", "-n", "500")
        assert "started with 1 queue(s)" in shown.stdout and "refused" in shown.stdout
        assert f"apf log: from the journal: journalctl --no-pager -u {UNIT} -n 500" in shown.stderr
    finally:
        box.run("systemctl", "stop", UNIT)
