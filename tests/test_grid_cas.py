"""Grid CAs by default (autopyfactory.tls): every HTTPS client trusts a CA found only in a hashed CA directory.

Two throw-away CAs: the "grid" CA signs the servers' certificate for
127.0.0.1 and sits only in a hashed directory (``<hash>.0``, as the IGTF RPMs
install /etc/grid-security/certificates); the "other" CA is in a second hashed
directory, standing for a grid CA directory that lacks the server's CA.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from autopyfactory import tls
from autopyfactory.alarms import Alarm, Alarms
from autopyfactory.cli import apf
from autopyfactory.context import FactoryContext
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.monitor.apfmon import APFMon
from autopyfactory.plugins.wmsstatus.panda import Panda, PandaError
from autopyfactory.records import CycleRecord
from autopyfactory.settings import QueueConfig
from tests.conftest import wait_for
from tests.panda_double import PandaDouble
from tests.test_panda_plugin import panda_queue

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl tool missing (tests/services/openssl.sh installs it)")


def openssl(*args: str, cwd: Path) -> str:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          timeout=60).stdout


def hashed_dir(directory: Path, ca: Path) -> Path:
    """A CA directory as grid sites have it: the CA under its subject hash, with IGTF's side files."""
    directory.mkdir()
    digest = openssl("x509", "-hash", "-noout", "-in", str(ca), cwd=directory).strip()
    shutil.copy(ca, directory / f"{digest}.0")
    (directory / f"{digest}.signing_policy").write_text("# IGTF side file, not a certificate\n")
    return directory


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gridpki")
    for ca in ("grid", "other"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}-ca.key", "-out", f"{ca}-ca.pem",
                "-days", "1", "-subj", f"/DC=org/DC=test/CN=APF {ca} test CA", cwd=d)
        hashed_dir(d / f"{ca}-cadir", d / f"{ca}-ca.pem")
    (d / "server.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "grid-ca.pem", "-CAkey", "grid-ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "1", "-extfile", "server.ext", cwd=d)
    unhashed = d / "unhashed-cadir"
    unhashed.mkdir()
    shutil.copy(d / "grid-ca.pem", unhashed / "grid-ca.pem")
    return d


def server_context(pki: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    return context


@pytest.fixture
def no_grid_env(monkeypatch, tmp_path):
    """No X509_CERT_DIR and no /etc/grid-security/certificates, whatever this machine has."""
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    monkeypatch.setattr(tls, "GRID_CA_DIR", str(tmp_path / "no-grid-security"))


@pytest.fixture
def https_panda(pki):
    double = PandaDouble()
    double.ssl_context = server_context(pki)
    double.up()
    yield double
    double.close()


class HTTPSServer(ThreadingHTTPServer):
    """Any other HTTPS server the factory talks to: a remote queueConf, APFMon, a proxy in front of the web API."""

    daemon_threads = True

    def __init__(self, pki: Path):
        self.seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def answer(handler):  # noqa: N805
                length = int(handler.headers.get("Content-Length") or 0)
                handler.rfile.read(length)
                self.seen.append(f"{handler.command} {handler.path}")
                body = {"/queues.conf": b"[REMOTE]\nwmsstatusplugin = Local\nbatchstatusplugin = Local\n"
                                        b"batchsubmitplugin = Local\n",
                        "/api/v1/factory": json.dumps({"factory_id": "behind-a-proxy"}).encode(),
                        "/api/v1/queues": b'{"queues": []}'}.get(handler.path, b"{}")
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)

            do_GET = do_PUT = do_POST = answer  # noqa: N815

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.socket = server_context(pki).wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def https_server(pki):
    server = HTTPSServer(pki)
    yield server
    server.shutdown()
    server.server_close()


def panda_plugin(confdir, panda: PandaDouble, **keys) -> Panda:
    confdir.write(panda_queue("q", panda.url, **keys))
    queue = confdir.load().queues["q"]
    return Panda(queue.plugin_options(Panda), FactoryContext(confdir.load()))


# ---------------------------------------------------------------- the choice


def test_the_choice_explicit_then_x509_cert_dir_then_grid_directory_then_system(monkeypatch, tmp_path):
    grid = tmp_path / "certificates"
    monkeypatch.setattr(tls, "GRID_CA_DIR", str(grid))
    env = {"X509_CERT_DIR": "/opt/cas"}
    assert tls.ca_trust("/site/cas.pem", "wmsstatus.panda.capath", env) == tls.CAs("/site/cas.pem",
                                                                                   "wmsstatus.panda.capath")
    assert tls.ca_trust("", environ=env) == tls.CAs("/opt/cas", "X509_CERT_DIR", also_system=True)
    assert tls.ca_trust("", environ={}).path != str(grid)  # the grid directory only when it exists
    grid.mkdir()
    assert tls.ca_trust("", environ={}) == tls.CAs(str(grid), "the grid CA directory", also_system=True)
    assert tls.ca_trust("", environ={"X509_CERT_DIR": ""}).path == str(grid)  # empty = unset
    monkeypatch.setattr(tls, "GRID_CA_DIR", str(tmp_path / "absent"))
    system = tls.ca_trust("", environ={})
    assert system.source.startswith("the system CA") or system.path == ""
    assert system.verify("https://example.org") in (system.path, True)
    # a plain http URL never needs the CAs, even missing ones
    assert tls.CAs("/nowhere", "X509_CERT_DIR").verify("http://example.org") is True


# ---------------------------------------------------------------- PanDA


def test_panda_trusts_a_ca_found_only_in_the_hashed_x509_cert_dir(confdir, https_panda, pki, no_grid_env,
                                                                  monkeypatch):
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "grid-cadir"))
    plugin = panda_plugin(confdir, https_panda)  # no capath key
    assert plugin.poll(["TEST_SITE_A"])["TEST_SITE_A"] == WMSQueueInfo(notready=2, ready=3, running=1)


def test_panda_trusts_etc_grid_security_certificates_when_it_exists(confdir, https_panda, pki, monkeypatch):
    monkeypatch.delenv("X509_CERT_DIR", raising=False)
    monkeypatch.setattr(tls, "GRID_CA_DIR", str(pki / "grid-cadir"))
    plugin = panda_plugin(confdir, https_panda)
    assert plugin.poll(["TEST_SITE_A"])["TEST_SITE_A"] == WMSQueueInfo(notready=2, ready=3, running=1)


def test_panda_fails_naming_the_ca_directory_that_lacks_the_servers_ca(confdir, https_panda, pki, no_grid_env,
                                                                       monkeypatch):
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    plugin = panda_plugin(confdir, https_panda)
    with pytest.raises(PandaError) as error:
        plugin.poll(["TEST_SITE_A"])
    message = str(error.value)
    assert "certificate verify failed" in message
    assert f"checked against the CA directory {pki / 'other-cadir'} (from X509_CERT_DIR)" in message


def test_panda_without_any_grid_ca_does_not_trust_the_grid_server(confdir, https_panda, no_grid_env):
    plugin = panda_plugin(confdir, https_panda)
    with pytest.raises(PandaError, match="certificate verify failed.*checked against the (CAs of|CA bundle)"):
        plugin.poll(["TEST_SITE_A"])


def test_an_explicit_capath_wins_over_x509_cert_dir(confdir, https_panda, pki, monkeypatch):
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    plugin = panda_plugin(confdir, https_panda, **{"wmsstatus.panda.capath": str(pki / "grid-cadir")})
    assert plugin.poll(["TEST_SITE_A"])["TEST_SITE_A"].ready == 3
    plugin = panda_plugin(confdir, https_panda, **{"wmsstatus.panda.capath": str(pki / "grid-ca.pem")})
    assert plugin.poll(["TEST_SITE_A"])["TEST_SITE_A"].ready == 3  # a bundle works too


def test_a_directory_not_hashed_is_named_with_the_command_that_fixes_it(confdir, https_panda, pki):
    directory = pki / "unhashed-cadir"
    plugin = panda_plugin(confdir, https_panda, **{"wmsstatus.panda.capath": str(directory)})
    with pytest.raises(PandaError, match=f"certificate verify failed.*run openssl rehash {directory}"):
        plugin.poll(["TEST_SITE_A"])


def test_a_missing_ca_directory_is_said_before_any_connection(confdir, https_panda, tmp_path, monkeypatch):
    monkeypatch.setenv("X509_CERT_DIR", str(tmp_path / "typo"))
    plugin = panda_plugin(confdir, https_panda)
    with pytest.raises(PandaError, match=f"CA bundle {tmp_path / 'typo'} \\(from X509_CERT_DIR\\) does not exist"):
        plugin.poll(["TEST_SITE_A"])
    assert https_panda.count() == 0


# ---------------------------------------------------------------- every other HTTPS client


def test_a_remote_queueconf_is_fetched_with_the_grid_cas(confdir, https_server, pki, no_grid_env, monkeypatch):
    path = confdir.write("")
    path.write_text(path.read_text().replace("queueConf = queues.conf", f"queueConf = {https_server.url}/queues.conf"))
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "grid-cadir"))
    assert "REMOTE" in confdir.load().queues
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    warnings = "\n".join(map(str, confdir.load().warnings))  # the last good copy stands in, with why
    assert f"the CA directory {pki / 'other-cadir'} (from X509_CERT_DIR)" in warnings
    assert "using the last good copy" in warnings


def test_apfmon_reports_over_https_with_the_grid_cas(confdir, https_server, pki, no_grid_env, monkeypatch):
    confdir.write("", monitor=f"[apfmon]\nmonitorplugin = APFMon\nmonitorURL = {https_server.url}/api\n")
    config = confdir.load()
    record_queue = QueueConfig("Q", "queues.conf")
    for cadir, works in (("grid-cadir", True), ("other-cadir", False)):
        monkeypatch.setenv("X509_CERT_DIR", str(pki / cadir))
        monitor = APFMon(config.monitor["apfmon"], FactoryContext(config))
        monitor.start()
        monitor.cycle_done(record_queue, CycleRecord(queue="Q", number=1))
        try:
            wait_for(lambda m=monitor: m.sent + m.failed >= 2, what="the monitor calls")  # noqa: B023
        finally:
            monitor.stop(timeout=2)
        if works:
            assert monitor.failed == 0 and "POST /api/labels/test-factory:Q" in https_server.seen
        else:
            assert monitor.sent == 0
            assert f"the CA directory {pki / cadir} (from X509_CERT_DIR)" in monitor.last_error


def test_apf_talks_to_an_https_url_with_the_grid_cas(https_server, pki, no_grid_env, monkeypatch, capsys):
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "grid-cadir"))
    assert apf.main(["status", "--url", https_server.url]) == 0
    assert "behind-a-proxy" in capsys.readouterr().out
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    assert apf.main(["status", "--url", https_server.url]) == 3
    assert f"the CA directory {pki / 'other-cadir'} (from X509_CERT_DIR)" in capsys.readouterr().err


def test_an_alarm_webhook_is_posted_with_the_grid_cas(https_server, pki, no_grid_env, monkeypatch):
    settings = {"alarms.webhook": f"{https_server.url}/hook", "alarms.webhookretries": 0,
                "alarms.webhooktimeout": 10.0}
    alarms = Alarms(SimpleNamespace(config=SimpleNamespace(get=settings.get)))
    alarm = Alarm("test-factory", "host", "Q", "critical", "status unknown", "WMS status unknown", 0.0)
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "grid-cadir"))
    alarms._post_webhook(alarm)
    assert "POST /hook" in https_server.seen
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    with pytest.raises(RuntimeError, match=f"the CA directory {pki / 'other-cadir'} \\(from X509_CERT_DIR\\)"):
        alarms._post_webhook(alarm)


def test_the_systems_cas_are_trusted_too_unless_the_cas_are_a_key(confdir, https_panda, https_server, pki,
                                                                   no_grid_env, monkeypatch):
    # a grid site (its CA directory lacks the server's CA) reaching a server of a public CA, which the
    # system's bundle has (SSL_CERT_FILE stands for that bundle here: OpenSSL reads it as the default)
    monkeypatch.setenv("X509_CERT_DIR", str(pki / "other-cadir"))
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "grid-ca.pem"))
    assert panda_plugin(confdir, https_panda).poll(["TEST_SITE_A"])["TEST_SITE_A"].ready == 3
    settings = {"alarms.webhook": f"{https_server.url}/hook", "alarms.webhookretries": 0,
                "alarms.webhooktimeout": 10.0}
    Alarms(SimpleNamespace(config=SimpleNamespace(get=settings.get)))._post_webhook(
        Alarm("test-factory", "host", "Q", "critical", "status unknown", "WMS status unknown", 0.0))
    assert "POST /hook" in https_server.seen
    # an explicit capath is trusted alone
    plugin = panda_plugin(confdir, https_panda, **{"wmsstatus.panda.capath": str(pki / "other-cadir")})
    with pytest.raises(PandaError, match="certificate verify failed"):
        plugin.poll(["TEST_SITE_A"])
    # and the host name is still checked against the certificate
    mismatch = https_panda.url.replace("127.0.0.1", "localhost")
    confdir.write(panda_queue("q", mismatch))
    plugin = Panda(confdir.load().queues["q"].plugin_options(Panda), FactoryContext(confdir.load()))
    with pytest.raises(PandaError, match="SSLError"):
        plugin.poll(["TEST_SITE_A"])
