"""What Apache gives the PanDA server, for gunicorn (tests/pandainstance.py starts it with this module).

In production the server runs under Apache: mod_wsgi's ``WSGIScriptAliasMatch``
puts the whole URL path into ``SCRIPT_NAME`` (the server routes on it) and
mod_ssl (``+StdEnvVars +LegacyDNStringFormat``) puts the verified client
certificate's subject into ``SSL_CLIENT_S_DN`` (the server's identity of the
caller). gunicorn does the TLS and client verification itself; this shim moves
the path and sets the DN from the certificate of the connection. Any
``SSL_*`` value that came from elsewhere is dropped first.
"""

import os

os.environ.setdefault("PANDA_BEHIND_REAL_LB", "1")  # else importing the server resolves its cache host

from pandaserver.server.panda import application as panda_application  # noqa: E402

SHORT_NAMES = {"domainComponent": "DC", "commonName": "CN", "organizationName": "O",
               "organizationalUnitName": "OU", "countryName": "C", "localityName": "L"}


def client_dn(sock):
    """``/DC=test/CN=name`` of the verified client certificate, or None."""
    try:
        cert = sock.getpeercert()
    except (AttributeError, ValueError, OSError):
        return None
    if not cert:
        return None
    return "/" + "/".join(f"{SHORT_NAMES.get(k, k)}={v}" for rdn in cert["subject"] for k, v in rdn)


def application(environ, start_response):
    environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    environ["PATH_INFO"] = ""
    for key in [k for k in environ if k.startswith(("SSL_", "GRST_"))]:
        del environ[key]
    dn = client_dn(environ.get("gunicorn.socket"))
    if dn:
        environ["SSL_CLIENT_S_DN"] = dn
        environ["HTTPS"] = "on"
    return panda_application(environ, start_response)
