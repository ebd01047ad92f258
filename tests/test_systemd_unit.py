"""The systemd unit, directive by directive, against what a grid factory must do (docs/operations.md "Under
systemd"). tests/test_systemd_nspawn.py runs the same unit under a real systemd and tries each need."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import local_queue

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "etc/systemd/autopyfactory.service"
DROP_IN = REPO / "etc/systemd/site-paths.conf"

# What a grid factory must do from inside the unit.
READ_GRID_SECURITY = "read /etc/grid-security (CAs, host certificate; the key by LoadCredential= or an ACL)"
RUN_CLIENTS = "run condor_submit/sbatch (as this user, from /usr/bin) with the site's client config in /etc"
PILOT_LOGS = "write pilot logs (/var/log/autopyfactory/pilots; a site's own place by ReadWritePaths=)"
SCHEDD = "reach the schedd (shared-port socket in /run/lock/condor, TCP 9618), munge's socket, PanDA (HTTPS)"
CREDENTIALS = "keep proxies and tokens where HTCondor's daemons read them too (not the unit's private /tmp)"
FAIL_CLEANLY = "a call the filter refuses fails with EPERM and the program says why (no SIGSYS)"
LIFECYCLE = "start once every queue runs (READY=1), reload live (SIGHUP), stop letting cycles finish"

# Every directive of [Service]: its value, the needs it bears on, and why they still work. A directive
# added, removed or changed must be weighed here again (the test compares the unit with this table).
SERVICE = {
    "Type": ("notify", LIFECYCLE, "active only after READY=1"),
    "NotifyAccess": ("main", LIFECYCLE, "only the daemon's own READY=1/RELOADING=1/STOPPING=1 count"),
    "User": ("autopyfactory", RUN_CLIENTS, "pilots are submitted as this user, as APF 2.4 did"),
    "Group": ("autopyfactory", READ_GRID_SECURITY, "auth.conf is root:autopyfactory 0640"),
    "Environment": ("APF_CONF=/etc/apf/factory.conf APF_LOGLEVEL=info APF_OPTIONS=", "", "defaults"),
    "EnvironmentFile": ("-/etc/sysconfig/autopyfactory", "", "the site's options"),
    "ExecStart": ("/usr/bin/autopyfactory --foreground --conf ${APF_CONF} --loglevel ${APF_LOGLEVEL} $APF_OPTIONS",
                  LIFECYCLE, "in the foreground, logging to the journal"),
    "ExecReload": ("/bin/kill -HUP $MAINPID", LIFECYCLE, "a live reload, never a restart"),
    "KillMode": ("mixed", LIFECYCLE, "SIGTERM to the daemon only, so a cycle finishes its submission"),
    "TimeoutStopSec": ("90", LIFECYCLE, "longer than a submission's command timeout"),
    "Restart": ("on-failure", LIFECYCLE, ""),
    "RestartSec": ("30", LIFECYCLE, ""),
    "StateDirectory": ("autopyfactory autopyfactory/credentials", CREDENTIALS,
                       "/var/lib/autopyfactory/credentials: host-visible, the schedd (root) and the gridmanager "
                       "(this user) read it"),
    "StateDirectoryMode": ("0750", CREDENTIALS, "credential files themselves are 0600"),
    "LogsDirectory": ("autopyfactory autopyfactory/pilots", PILOT_LOGS, "writable though /var is read-only"),
    "LogsDirectoryMode": ("0755", PILOT_LOGS, "the web server and the site's httpd read pilot logs"),
    "RuntimeDirectory": ("autopyfactory", "", ""),
    "ProtectSystem": ("strict", READ_GRID_SECURITY + RUN_CLIENTS,
                      "everything stays readable; writes only where listed (site-paths.conf adds more)"),
    "ProtectHome": ("read-only", PILOT_LOGS, "an APF 2.4 baseLogDir under /home needs ReadWritePaths="),
    "PrivateTmp": ("yes", CREDENTIALS, "proxies in /tmp are invisible to HTCondor: apf check-config warns"),
    "PrivateMounts": ("yes", "", ""),
    "PrivateDevices": ("yes", "", "/dev/null, /dev/urandom, /dev/shm remain"),
    "NoNewPrivileges": ("yes", RUN_CLIENTS, "condor_submit and sbatch need no setuid"),
    "CapabilityBoundingSet": ("", READ_GRID_SECURITY, "no CAP_DAC_OVERRIDE: root's 0400 key needs a documented way"),
    "AmbientCapabilities": ("", "", ""),
    "ProtectKernelTunables": ("yes", "", ""),
    "ProtectKernelModules": ("yes", "", ""),
    "ProtectKernelLogs": ("yes", "", ""),
    "ProtectControlGroups": ("yes", "", ""),
    "ProtectClock": ("yes", "", ""),
    "ProtectHostname": ("yes", "", ""),
    "ProtectProc": ("invisible", RUN_CLIENTS, "the clients look at their own processes only"),
    "RestrictNamespaces": ("yes", "", ""),
    "RestrictRealtime": ("yes", "", ""),
    "RestrictSUIDSGID": ("yes", "", ""),
    "LockPersonality": ("yes", "", ""),
    "MemoryDenyWriteExecute": ("yes", RUN_CLIENTS, "no JIT in the daemon or the clients"),
    "RemoveIPC": ("yes", "", ""),
    "UMask": ("0022", PILOT_LOGS, "pilot logs readable by the web server; credentials are written 0600"),
    "RestrictAddressFamilies": ("AF_UNIX AF_INET AF_INET6 AF_NETLINK", SCHEDD, "local sockets and the network"),
    "SystemCallArchitectures": ("native", "", ""),
    "SystemCallFilter": ("@system-service\n~@privileged @mount @clock @debug @module @obsolete @raw-io @reboot "
                         "@swap @cpu-emulation", RUN_CLIENTS, "what services use stays allowed"),
    "SystemCallErrorNumber": ("EPERM", FAIL_CLEANLY, ""),
    "DevicePolicy": ("closed", "", ""),
}
NEEDS = (READ_GRID_SECURITY, RUN_CLIENTS, PILOT_LOGS, SCHEDD, CREDENTIALS, FAIL_CLEANLY, LIFECYCLE)


def directives(path: Path, section: str = "Service") -> dict[str, str]:
    """A unit file's directives of ``section``; repeated ones joined by newlines, as systemd adds them up."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return {key: "\n".join(values) for key, values in found.items()}


def test_every_directive_is_weighed_against_the_grid_table():
    service = directives(UNIT)
    assert sorted(service) == sorted(SERVICE), (set(service) ^ set(SERVICE))
    for key, (value, _, _) in SERVICE.items():
        assert service[key] == value, (key, service[key])
    # every need is served by some directive, and every row names only needs of the table
    weighed = "".join(need for _, need, _ in SERVICE.values())
    assert all(need in weighed for need in NEEDS)


def test_the_unit_leaves_every_grid_need_possible():
    service = directives(UNIT)
    # nothing of the grid's hidden or made unreachable
    # ProcSubset=pid hides /proc/cpuinfo: HTCondor's config then finds DETECTED_CPUS = 0 (tried under nspawn)
    for forbidden in ("ProcSubset", "InaccessiblePaths", "TemporaryFileSystem", "NoExecPaths", "PrivateNetwork", "IPAddressDeny",
                      "PrivateUsers", "RootDirectory", "RootImage", "BindPaths", "DynamicUser"):
        assert forbidden not in service, forbidden
    assert set(service["RestrictAddressFamilies"].split()) >= {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "autopyfactory/credentials" in service["StateDirectory"].split()
    assert "autopyfactory/pilots" in service["LogsDirectory"].split()
    assert service["SystemCallErrorNumber"] == "EPERM"
    assert service["SystemCallFilter"].startswith("@system-service")
    # /etc, /usr and /run stay readable: only "strict" (read-only) or less, never hidden
    assert service["ProtectSystem"] in ("strict", "full", "yes")
    unit = directives(UNIT, "Unit")
    assert unit["Documentation"].split()[:2] == ["man:autopyfactory(1)", "man:apf(1)"]


def test_the_site_drop_in_example_adds_places_without_loosening_the_rest():
    shipped = directives(DROP_IN)
    assert shipped == {}  # every line commented: copying it changes nothing until the site chooses
    offered = {}
    for line in DROP_IN.read_text().splitlines():
        if line.startswith("#") and "=" in line and line[1:2].isupper():
            key, _, value = line[1:].partition("=")
            offered.setdefault(key, []).append(value)
    assert {"ReadWritePaths", "LoadCredential", "InaccessiblePaths", "Environment"} <= set(offered)
    assert "hostkey.pem:/etc/grid-security/hostkey.pem" in offered["LoadCredential"]
    # what it offers only adds places or takes some away; nothing that undoes the hardening
    assert set(offered) <= {"ReadWritePaths", "LoadCredential", "InaccessiblePaths", "Environment"}


def test_systemd_unit_is_rated_ok_by_systemd_analyze():
    if not shutil.which("systemd-analyze"):
        pytest.fail("systemd-analyze is missing: tests/services/systemd.sh installs it (make test runs it)")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)],
                            capture_output=True, text=True, timeout=120)
    verdict = result.stdout.strip().splitlines()[-1]
    exposure = float(verdict.split("autopyfactory.service:")[1].split()[0])
    assert exposure <= 3.0, verdict


def test_check_config_warns_of_credentials_in_tmp(confdir):
    """APF 2.4 sites kept proxies in /tmp; the unit's /tmp is private, so each such path gets a warning."""
    auth = ("[prod]\nplugin = X509\nx509.proxyfile = /tmp/prodProxy\nx509.userkey = /etc/grid-security/hostkey.pem\n\n"
            "[pilot-token]\nplugin = Token\ntoken.tokenfile = /var/tmp/../../tmp/pilot.token\n\n"
            "[moved]\nplugin = X509\nx509.proxyfile = /var/lib/autopyfactory/credentials/prodProxy\n")
    queue = local_queue("Q", confdir.spool, **{"batchsubmit.condorce.condor_attributes.x509userproxy": "/tmp/x509up_u0",
                                               "batchsubmit.condorce.condor_attributes": "x509userproxy = /var/tmp/p"})
    path = confdir.write(queue, auth=auth)
    check = subprocess.run([sys.executable, "-m", "autopyfactory.cli.apf", "check-config", "--conf", str(path)],
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr  # a warning, not an error: the config still loads
    warnings = [line for line in check.stderr.splitlines() if "PrivateTmp" in line]
    auth_file, queues_file = confdir.root / "auth.conf", confdir.root / "queues.conf"
    assert sorted(line.split(" is in ")[0] for line in warnings) == sorted([
        f"warning: {queues_file}: [Q] batchsubmit.condorce.condor_attributes.x509userproxy: /tmp/x509up_u0",
        f"warning: {queues_file}: [Q] batchsubmit.condorce.condor_attributes: /var/tmp/p",
        f"warning: {auth_file}: [prod] x509.proxyfile: /tmp/prodProxy",
        f"warning: {auth_file}: [pilot-token] token.tokenfile: /tmp/pilot.token",
    ]), check.stderr
    assert "move it to /var/lib/autopyfactory/credentials" in warnings[0]
