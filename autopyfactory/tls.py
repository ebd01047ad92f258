"""Which CAs every HTTPS client of the factory trusts: the grid's by default.

One choice for PanDA, APFMon, a remote ``queueConf``, the ``apf`` tool and any
other HTTPS client (``requests``' ``verify=``), in this order:

1. an explicit key (e.g. ``wmsstatus.panda.capath``): a CA directory or bundle;
2. ``X509_CERT_DIR``, as every grid tool reads it;
3. ``/etc/grid-security/certificates`` when it exists (the IGTF CAs grid
   servers' certificates chain to);
4. the system's CA bundle (what OpenSSL uses by default; ``requests``' own
   bundle only when the system has none).

A :func:`session` made for them trusts the system's CAs as well as the
grid's (2, 3): a grid site's factory still reaches a webhook or an APFMon
whose certificate comes from a public CA. An explicit key (1) is trusted alone.

A CA directory must be hashed (``<hash>.0`` names, as the IGTF RPMs ship it
or ``openssl rehash DIR`` makes it): OpenSSL finds a CA there by the hash of
its subject, never by reading every file.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

GRID_CA_DIR = "/etc/grid-security/certificates"
HASHED = re.compile(r"^[0-9a-f]{8}\.[0-9]+$")


class CAMissing(OSError):
    """The CA directory or bundle chosen does not exist (said before any connection is tried)."""


@dataclass(frozen=True)
class CAs:
    """The CAs chosen: ``path`` (a directory or a bundle; "" = requests' own bundle) and where it came from."""

    path: str
    source: str
    also_system: bool = False  # a session() adds the system's CAs (said in messages; the grid's are not all)

    def verify(self, url: str) -> str | bool:
        """``requests``' ``verify=`` for ``url``; raises CAMissing when an https URL's CAs do not exist."""
        if not self.path or not url.lower().startswith("https://"):
            return True
        if not os.path.exists(self.path):
            raise CAMissing(f"CA {self.kind} {self.path} (from {self.source}) does not exist")
        return self.path

    @property
    def kind(self) -> str:
        return "directory" if os.path.isdir(self.path) else "bundle"

    def __str__(self) -> str:
        if not self.path:
            return f"the CAs of {self.source}"
        return f"the CA {self.kind} {self.path} (from {self.source})" + (
            " and the system's CAs" if self.also_system else "")

    def explain(self, error: BaseException) -> str:
        """What to add to an HTTPS error: for a certificate not verified, which CAs were tried."""
        text = str(error)
        if "CERTIFICATE_VERIFY_FAILED" not in text and "certificate verify failed" not in text:
            return ""
        hint = f"server certificate checked against {self}"
        if self.path and os.path.isdir(self.path):
            try:
                hashed = any(HASHED.match(name) for name in os.listdir(self.path))
            except OSError:
                hashed = True
            if not hashed:
                hint += f"; it holds no hashed CA names (<hash>.0): run openssl rehash {self.path}"
        return hint


def ca_trust(explicit: str = "", setting: str = "capath", environ: Mapping[str, str] | None = None) -> CAs:
    """The CAs an HTTPS client verifies servers with: ``explicit`` (the key ``setting``), else the grid's, else the system's."""
    environ = os.environ if environ is None else environ
    if explicit:
        return CAs(explicit, setting)
    if environ.get("X509_CERT_DIR"):
        return CAs(environ["X509_CERT_DIR"], "X509_CERT_DIR", also_system=True)
    if os.path.isdir(GRID_CA_DIR):
        return CAs(GRID_CA_DIR, "the grid CA directory", also_system=True)
    system = ssl.get_default_verify_paths()
    if system.cafile:
        return CAs(system.cafile, "the system CA bundle")
    if system.capath and os.path.isdir(system.capath):
        return CAs(system.capath, "the system CA directory")
    return CAs("", "requests' own bundle (no system CA bundle found)")


class AlsoSystemCAs(HTTPAdapter):
    """HTTPS whose every connection trusts the system's CAs, to which a request's ``verify=`` adds its own."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs.setdefault("ssl_context", ssl.create_default_context())  # the system's CAs, hostnames checked
        super().init_poolmanager(*args, **kwargs)


def session(explicit: str = "") -> requests.Session:
    """A requests Session to send ``verify=ca_trust(explicit).verify(url)`` with: it trusts the system's
    CAs too, unless the CAs are an explicit key's (trusted alone)."""
    new = requests.Session()
    if not explicit:
        new.mount("https://", AlsoSystemCAs())
    return new
