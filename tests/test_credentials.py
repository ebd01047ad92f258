"""Credentials: X509 renewal with stand-in voms-proxy-* tools, tokens, SSH keys, blocking submission.

The real VOMS clients cannot be installed here; small stand-ins on PATH keep
the same command lines. Their "proxy" is a text file with ``expires=EPOCH``
and ``fqan=...`` lines.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from autopyfactory.commands import run
from autopyfactory.credentials import CredentialService
from autopyfactory.factory import Factory
from tests.conftest import local_queue, wait_for

VOMS_PROXY_INFO = """\
    import os, sys, time
    args = sys.argv[1:]
    path = args[args.index("-file") + 1]
    fields = dict(line.split("=", 1) for line in open(path).read().split() if "=" in line)
    left = max(0, int(float(fields.get("expires", 0)) - time.time()))
    if "-timeleft" in args or "-actimeleft" in args:
        print(left)
    elif "-fqan" in args:
        for fqan in fields.get("fqan", "").split(","):
            if fqan:
                print(fqan + "/Capability=NULL")
"""

VOMS_PROXY_INIT = """\
    import os, sys, time
    args = sys.argv[1:]
    log = os.environ.get("FAKE_VOMS_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(" ".join(["voms-proxy-init"] + args) + "\\n")
    pidfile = os.environ.get("FAKE_VOMS_PIDFILE")
    if pidfile:
        open(pidfile, "w").write(str(os.getpid()))
    time.sleep(float(os.environ.get("FAKE_VOMS_SLEEP", "0")))
    if os.environ.get("FAKE_VOMS_FAIL"):
        print("Error: Could not establish authenticated connection with the server.", file=sys.stderr)
        sys.exit(1)
    out = args[args.index("-out") + 1]
    hours, minutes = args[args.index("-valid") + 1].split(":")
    fqan = os.environ.get("FAKE_VOMS_FQAN")
    if fqan is None and "-voms" in args:
        role = args[args.index("-voms") + 1]
        fqan = role.split(":", 1)[1] if ":" in role else "/" + role
    with open(out, "w") as handle:
        handle.write(f"expires={time.time() + int(hours) * 3600 + int(minutes) * 60}\\nfqan={fqan or ''}\\n")
"""


@pytest.fixture
def voms(tmp_path, monkeypatch) -> Path:
    """Stand-in voms-proxy-info / voms-proxy-init first on PATH; returns the log of init calls."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, code in (("voms-proxy-info", VOMS_PROXY_INFO), ("voms-proxy-init", VOMS_PROXY_INIT)):
        path = bindir / name
        path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(code))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "voms-calls.log"
    monkeypatch.setenv("FAKE_VOMS_LOG", str(log))
    return log


def proxy(path: Path, seconds_left: float, fqan: str = "/atlas/Role=production") -> Path:
    path.write_text(f"expires={time.time() + seconds_left}\nfqan={fqan}\n")
    path.chmod(0o600)
    return path


def x509_profile(tmp_path: Path, **extra: str) -> str:
    keys = {"plugin": "X509", "x509.proxyfile": str(tmp_path / "proxy"), "x509.vorole": "atlas:/atlas/Role=production",
            "x509.usercert": str(tmp_path / "cert.pem"), "x509.userkey": str(tmp_path / "key.pem"),
            "x509.lifetime": "345600", "x509.minlife": "259200", "x509.checktime": "3600", **extra}
    return "[prod]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())


def service(confdir, auth: str) -> CredentialService:
    confdir.write(local_queue("Q", confdir.spool), auth=auth)
    config = confdir.load()
    factory = Factory(config)
    return factory.credentials


# ---------------------------------------------------------------- X509


def test_x509_renews_below_minlife_and_validates(confdir, tmp_path, voms):
    proxy(tmp_path / "proxy", 3600)  # an hour left, minlife three days
    credentials = service(confdir, x509_profile(tmp_path))
    state = credentials.check("prod")
    assert state.ok, state.message
    assert state.message == "renewed"
    assert 345600 - 120 < state.seconds_left <= 345600
    assert stat.S_IMODE((tmp_path / "proxy").stat().st_mode) == 0o600
    call = voms.read_text().split()
    assert call[0] == "voms-proxy-init"
    assert call[call.index("-voms") + 1] == "atlas:/atlas/Role=production"
    assert call[call.index("-valid") + 1] == "96:00"
    assert call[call.index("-cert") + 1] == str(tmp_path / "cert.pem")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".apf")]  # no temporary files left


def test_x509_not_renewed_with_enough_time_left(confdir, tmp_path, voms):
    proxy(tmp_path / "proxy", 300000)
    state = service(confdir, x509_profile(tmp_path)).check("prod")
    assert state.ok and state.message == ""
    assert 300000 - 120 < state.seconds_left <= 300000
    assert not voms.exists()


def test_x509_renewal_failure_keeps_the_old_proxy(confdir, tmp_path, voms, monkeypatch):
    proxy(tmp_path / "proxy", 7200)
    before = (tmp_path / "proxy").read_text()
    monkeypatch.setenv("FAKE_VOMS_FAIL", "1")
    state = service(confdir, x509_profile(tmp_path)).check("prod")
    # still valid for two hours: usable, but the failure is said
    assert state.ok
    assert "renewal failed" in state.message and "authenticated connection" in state.message
    assert (tmp_path / "proxy").read_text() == before


def test_x509_renewed_proxy_with_the_wrong_role_is_rejected(confdir, tmp_path, voms, monkeypatch):
    proxy(tmp_path / "proxy", 100)
    before = (tmp_path / "proxy").read_text()
    monkeypatch.setenv("FAKE_VOMS_FQAN", "/atlas/Role=pilot")
    state = service(confdir, x509_profile(tmp_path)).check("prod")
    assert "renewed proxy rejected" in state.message and "/atlas/Role=production" in state.message
    assert (tmp_path / "proxy").read_text() == before


def test_x509_renewal_timing_out_is_killed_and_reported(confdir, tmp_path, voms, monkeypatch):
    monkeypatch.setenv("FAKE_VOMS_SLEEP", "300")
    monkeypatch.setenv("FAKE_VOMS_PIDFILE", str(tmp_path / "init.pid"))
    credentials = service(confdir, x509_profile(tmp_path, **{"x509.timeout": "1"}))  # no proxy at all yet
    state = credentials.check("prod")  # returns although voms-proxy-init hangs for 300s
    assert not state.ok
    assert "timed out after 1s" in state.message and "no proxy file" in state.message
    pid = int((tmp_path / "init.pid").read_text())
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the hung voms-proxy-init to be killed")


def test_x509_expired_without_renewal(confdir, tmp_path, voms):
    proxy(tmp_path / "proxy", -10)
    state = service(confdir, x509_profile(tmp_path, **{"x509.renew": "False"})).check("prod")
    assert not state.ok and state.seconds_left == 0 and "expired" in state.message


def test_x509_myproxy_flavor_command_line(confdir, tmp_path):
    from autopyfactory.plugins.auth.x509 import X509

    credentials = service(confdir, x509_profile(tmp_path, **{
        "x509.flavor": "myproxy", "x509.myproxyhost": "myproxy.example.org", "x509.myproxyuser": "apf",
        "x509.myproxypassfile": str(tmp_path / "pass")}))
    plugin = credentials.profiles["prod"]
    assert isinstance(plugin, X509)
    first, second = plugin.renew_argv("/tmp/out")
    assert first[:3] == ["myproxy-get-delegation", "-s", "myproxy.example.org"]
    assert "-S" in first and first[first.index("-l") + 1] == "apf"
    assert second[:2] == ["voms-proxy-init", "-noregen"]


# ---------------------------------------------------------------- Token and SSH


def jwt(exp: float) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'sub': 'pilot', 'exp': int(exp)})}.c2ln"


def test_token_time_left_and_renewal_from_stdout(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text(jwt(time.time() + 60))
    renew = tmp_path / "renew.py"
    renew.write_text(f"print({jwt(time.time() + 7200)!r})\n")
    auth = (f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\n"
            f"token.renewcommand = {sys.executable} {renew}\ntoken.minlife = 600\n")
    state = service(confdir, auth).check("tok")
    assert state.ok and state.message == "renewed"
    assert 7000 < state.seconds_left <= 7200
    assert stat.S_IMODE(tokenfile.stat().st_mode) == 0o600


def test_token_renewal_timeout(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text(jwt(time.time() - 5))
    auth = (f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\n"
            f"token.renewcommand = sleep 60\ntoken.timeout = 1\n")
    state = service(confdir, auth).check("tok")  # returns although the command sleeps 60 s
    assert not state.ok and "expired" in state.message and "timed out" in state.message


def test_token_garbage_is_not_ok(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text("not a token")
    state = service(confdir, f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\n").check("tok")
    assert not state.ok and "not a JWT" in state.message


def test_ssh_key_checks(confdir, tmp_path):
    key = tmp_path / "id_rsa"
    key.write_text("KEY")
    key.chmod(0o644)
    credentials = service(confdir, f"[ssh]\nplugin = SSH\nssh.privatekey = {key}\n")
    state = credentials.check("ssh")
    assert not state.ok and "readable by others" in state.message
    key.chmod(0o600)
    state = credentials.check("ssh")
    assert state.ok and state.seconds_left is None


def test_status_counts_down_and_all_status(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text(jwt(time.time() + 3))
    credentials = service(confdir, f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\ntoken.minlife = 0\n")
    assert credentials.status("tok") is None  # not checked yet
    assert credentials.check("tok").ok
    wait_for(lambda: not credentials.status("tok").ok, what="the token to expire")
    state = credentials.all_status()["tok"]
    assert not state.ok and state.seconds_left == 0 and "expired" in state.message


def test_run_command_never_uses_a_shell(tmp_path):
    result = run(["echo", "$HOME; rm -rf /"], timeout=10)
    assert result.ok and result.stdout.strip() == "$HOME; rm -rf /"
    missing = run([str(tmp_path / "nope")], timeout=10)
    assert not missing.ok and "cannot run" in missing.describe()


# ---------------------------------------------------------------- blocking submission

PROXY_LOCAL = """
    from autopyfactory.config import Key
    from autopyfactory.plugins.batchsubmit.local import Local

    class ProxyLocal(Local):
        '''Local submission that names a credential profile (batchsubmit.proxylocal.proxy).'''
        name = "ProxyLocal"
        keys = {**Local.keys, "proxy": Key("str", "")}
    """


def run_factory_cycles(confdir, auth: str, cycles: int = 2) -> Factory:
    confdir.dropin("proxylocal.py", PROXY_LOCAL)
    queue = local_queue("Q", confdir.spool, **{"batchsubmit.proxylocal.proxy": "tok", "executable": "/bin/true"})
    confdir.write(queue.replace("batchsubmitplugin = Local", "batchsubmitplugin = ProxyLocal"), auth=auth)
    confdir.work("Q", 3)
    config = confdir.load()
    factory = Factory(config)
    factory.start(cycles=cycles)
    factory.wait()
    factory.stop(10)
    return factory


def test_expired_credential_blocks_submission(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text(jwt(time.time() - 60))
    factory = run_factory_cycles(confdir, f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\n")
    queue = factory.queues["Q"]
    assert queue.submitted_total == 0
    assert all("credential tok not usable (expired" in r.message for r in queue.records), \
        [r.message for r in queue.records]


def test_valid_credential_lets_the_same_queue_submit(confdir, tmp_path):
    tokenfile = tmp_path / "token"
    tokenfile.write_text(jwt(time.time() + 86400))
    factory = run_factory_cycles(confdir, f"[tok]\nplugin = Token\ntoken.tokenfile = {tokenfile}\n"
                                          "token.minlife = 0\n")
    assert factory.queues["Q"].submitted_total > 0
