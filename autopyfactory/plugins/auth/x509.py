"""X.509 proxy profiles: check the time left, renew with voms-proxy-init or MyProxy."""

from __future__ import annotations

import os

from autopyfactory.commands import run
from autopyfactory.config import Key
from autopyfactory.credentials import private_tempfile
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin


def fqan_of(vorole: str) -> str:
    """``atlas:/atlas/Role=production`` -> ``/atlas/Role=production``; ``atlas`` -> ``/atlas``."""
    if ":" in vorole:
        return vorole.split(":", 1)[1]
    return "/" + vorole.strip("/")


def valid_arg(seconds: float) -> str:
    """Seconds as the ``HH:MM`` that voms-proxy-init -valid expects."""
    minutes = max(1, int(seconds) // 60)
    return f"{minutes // 60}:{minutes % 60:02d}"


class X509(AuthPlugin):
    """An X.509 (VOMS) proxy that pilots are submitted with.

    Keys (auth.conf, APF 2.4 names): ``x509.proxyfile`` (required),
    ``x509.vorole`` (VOMS role, e.g. ``atlas:/atlas/Role=production``),
    ``x509.flavor`` (voms | myproxy), ``x509.usercert``, ``x509.userkey``,
    ``x509.baseproxy`` (a long proxy to derive from instead of cert+key),
    ``x509.lifetime`` (604800 s asked for), ``x509.checktime`` (3600 s between
    checks), ``x509.minlife`` (259200 s: renew below this), ``x509.renew``
    (True), and ``x509.myproxyhost`` / ``x509.myproxyuser`` /
    ``x509.myproxypassfile`` for the myproxy flavor, ``x509.timeout`` (120 s per
    command).

    ``check`` returns the time left of the proxy (after renewing it when it
    was below minlife). Renewal writes a new proxy next to the old one, checks
    its time left and VO role, and only then replaces the old file (0600).
    """

    name = "X509"
    credential_type = "x509"
    keys = {
        "proxyfile": Key("path", required=True, help="the proxy file pilots are submitted with"),
        "vorole": Key("str", "", help="VOMS VO and role, e.g. atlas:/atlas/Role=production"),
        "flavor": Key("str", "voms", choices=("voms", "myproxy")),
        "usercert": Key("path", ""),
        "userkey": Key("path", ""),
        "baseproxy": Key("path", ""),
        "lifetime": Key("int", 604800, min=60),
        "checktime": Key("int", 3600, min=1),
        "minlife": Key("int", 259200, min=0),
        "renew": Key("bool", True),
        "myproxyhost": Key("str", ""),
        "myproxyuser": Key("str", ""),
        "myproxypassfile": Key("path", ""),
        "timeout": Key("float", 120.0, min=1),
    }

    @property
    def timeout(self) -> float:
        return float(self.options["timeout"])

    # -------------------------------------------------------------- inspecting
    def time_left(self, path: str) -> tuple[int | None, str]:
        """Seconds left of the proxy at ``path`` (voms-proxy-info), or None and why."""
        if not os.path.exists(path):
            return None, f"no proxy file {path}"
        result = run(["voms-proxy-info", "-file", path, "-timeleft"], self.timeout)
        if not result.ok:
            return None, result.describe()
        try:
            return max(0, int(result.stdout.strip().splitlines()[-1])), ""
        except (ValueError, IndexError):
            return None, f"voms-proxy-info -timeleft gave {result.stdout.strip()[:80]!r}"

    def role_problem(self, path: str) -> str:
        """'' if the proxy carries the configured VO role, else what is wrong."""
        vorole = self.options["vorole"]
        if not vorole:
            return ""
        result = run(["voms-proxy-info", "-file", path, "-fqan"], self.timeout)
        if not result.ok:
            return result.describe()
        fqans = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        wanted = fqan_of(vorole)
        if not any(f == wanted or f.startswith(wanted.rstrip("/") + "/") for f in fqans):
            return f"proxy lacks VO role {wanted} (has {', '.join(fqans) or 'none'})"
        left = run(["voms-proxy-info", "-file", path, "-actimeleft"], self.timeout)
        if left.ok:
            try:
                if int(left.stdout.strip().splitlines()[-1]) <= 0:
                    return f"VOMS attributes of {wanted} expired"
            except (ValueError, IndexError):
                pass
        return ""

    # -------------------------------------------------------------- renewing
    def renew_argv(self, out: str) -> list[list[str]]:
        """The commands that make a new proxy in ``out`` (argv lists, no shell)."""
        o = self.options
        lifetime = valid_arg(o["lifetime"])
        if o["flavor"] == "myproxy":
            argv = ["myproxy-get-delegation", "-s", o["myproxyhost"], "-o", out,
                    "-t", str(max(1, o["lifetime"] // 3600))]
            if o["myproxyuser"]:
                argv += ["-l", o["myproxyuser"]]
            if o["myproxypassfile"]:
                argv.append("-S")  # passphrase on stdin
            commands = [argv]
            if o["vorole"]:
                commands.append(["voms-proxy-init", "-noregen", "-cert", out, "-key", out, "-out", out,
                                 "-voms", o["vorole"], "-valid", lifetime, "-rfc"])
            return commands
        argv = ["voms-proxy-init", "-out", out, "-valid", lifetime, "-rfc"]
        if o["vorole"]:
            argv += ["-voms", o["vorole"], "-vomslife", lifetime]
        if o["baseproxy"]:
            argv += ["-noregen", "-cert", o["baseproxy"], "-key", o["baseproxy"]]
        else:
            if o["usercert"]:
                argv += ["-cert", o["usercert"]]
            if o["userkey"]:
                argv += ["-key", o["userkey"]]
        return [argv]

    def renew(self) -> str:
        """Make a new proxy and put it in place; '' on success, else why not."""
        target = self.options["proxyfile"]
        if self.options["flavor"] == "myproxy" and not self.options["myproxyhost"]:
            return "x509.flavor = myproxy needs x509.myproxyhost"
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        tmp = private_tempfile(target)
        try:
            for argv in self.renew_argv(tmp):
                stdin = None
                if argv[0] == "myproxy-get-delegation" and self.options["myproxypassfile"]:
                    with open(self.options["myproxypassfile"]) as handle:
                        stdin = handle.read()
                result = run(argv, self.timeout, input=stdin)
                if not result.ok:
                    return f"renewal failed: {result.describe()}"
            os.chmod(tmp, 0o600)
            left, why = self.time_left(tmp)
            if left is None or left <= 0:
                return f"renewed proxy is not valid: {why or 'no time left'}"
            problem = self.role_problem(tmp)
            if problem:
                return f"renewed proxy rejected: {problem}"
            os.replace(tmp, target)
            tmp = ""
            return ""
        except OSError as exc:
            return f"renewal failed: {exc}"
        finally:
            if tmp and os.path.exists(tmp):
                os.unlink(tmp)

    def check(self) -> CredentialStatus:
        path = self.options["proxyfile"]
        left, why, message = self.renew_when_due(lambda: self.time_left(path), self.options["renew"])
        failed = self.unusable(left, why, message, path)
        if failed is not None:
            return failed
        problem = self.role_problem(path)
        if problem:
            return CredentialStatus(self.section.name, False, left, problem, path)
        if left < self.options["minlife"] and not message:
            message = f"below x509.minlife ({self.options['minlife']}s)" + (
                "" if self.options["renew"] else ", renewal off")
        return CredentialStatus(self.section.name, True, left, message, path)
