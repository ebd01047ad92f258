"""The Panda plugin over HTTPS: capath, the proxy profile as client certificate, verification failures.

A throw-away CA signs a server certificate for 127.0.0.1 and a client
certificate (our "proxy": certificate and key in one file, as an X.509 proxy
is). The PanDA double serves HTTPS and requires a client certificate.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from autopyfactory.context import FactoryContext
from autopyfactory.credentials import CredentialService
from autopyfactory.info import WMSQueueInfo
from autopyfactory.plugins.wmsstatus.panda import Panda, PandaError
from tests.panda_double import PandaDouble
from tests.test_panda_plugin import PROXY_DROPIN, panda_queue

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="openssl tool missing (tests/services/openssl.sh installs it)")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=APF test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/DC=org/CN=apf pilot factory")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", subject, cwd=d)
        extra = ["-extfile", "server.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "1", *extra, cwd=d)
    (d / "x509up").write_text((d / "client.pem").read_text() + (d / "client.key").read_text())
    return d


@pytest.fixture
def https_panda(pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "server.pem", pki / "server.key")
    context.load_verify_locations(pki / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    double = PandaDouble()
    double.ssl_context = context
    double.up()
    yield double
    double.close()


def make(confdir, panda, pki, **keys) -> tuple[Panda, FactoryContext]:
    confdir.dropin("fileproxy.py", PROXY_DROPIN)
    auth = f"[atlas]\nplugin = FileProxy\nfileproxy.path = {pki / 'x509up'}\n"
    confdir.write(panda_queue("q", panda.url, **keys), auth=auth)
    config = confdir.load()
    context = FactoryContext(config)
    context.credentials = CredentialService(context)
    context.credentials.check_all()
    queue = config.queues["q"]
    return Panda(queue.plugin_options(Panda), context), context


def test_proxy_is_the_client_certificate_and_capath_verifies_the_server(confdir, https_panda, pki):
    plugin, context = make(confdir, https_panda, pki, **{
        "wmsstatus.panda.capath": str(pki / "ca.pem"), "wmsstatus.panda.proxy": "atlas"})
    result = plugin.poll(["TEST_SITE_A"])
    assert result["TEST_SITE_A"] == WMSQueueInfo(notready=2, ready=3, running=1)
    subject = dict(pair[0] for pair in https_panda.client_subjects[-1])
    assert subject["commonName"] == "apf pilot factory"
    context.close()


def test_server_not_trusted_without_its_ca(confdir, https_panda, pki):
    plugin, context = make(confdir, https_panda, pki, **{"wmsstatus.panda.proxy": "atlas"})
    with pytest.raises(PandaError, match="SSLError.*certificate verify failed"):
        plugin.poll(["TEST_SITE_A"])
    context.close()


def test_no_client_certificate_is_refused_by_the_server(confdir, https_panda, pki):
    plugin, context = make(confdir, https_panda, pki, **{"wmsstatus.panda.capath": str(pki / "ca.pem"),
                                                         "wmsstatus.panda.timeout": "5"})
    with pytest.raises(PandaError, match="SSLError|ConnectionError"):
        plugin.poll(["TEST_SITE_A"])
    assert https_panda.count() == 0
    context.close()
