"""Token profiles: a JWT file whose ``exp`` claim is watched, and a command that renews it."""

from __future__ import annotations

import base64
import json
import os
import shlex
import time

from autopyfactory.commands import run
from autopyfactory.config import Key
from autopyfactory.credentials import write_private
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin


def jwt_expiry(token: str) -> float:
    """The ``exp`` claim of a JWT (the signature is not checked: that is the server's job)."""
    parts = token.strip().split(".")
    if len(parts) < 2:
        raise ValueError("not a JWT (expected header.payload.signature)")
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"JWT payload is not base64url JSON: {exc}") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("exp"), int | float):
        raise ValueError("JWT has no numeric exp claim")
    return float(claims["exp"])


def looks_like_jwt(text: str) -> bool:
    parts = text.strip().split(".")
    return len(parts) == 3 and all(parts[:2]) and not any(c.isspace() for c in text.strip())


class Token(AuthPlugin):
    """A bearer token (JWT) in a file.

    Keys: ``token.tokenfile`` (required), ``token.renewcommand`` (an argv
    written like a command line, split without a shell; it either rewrites
    the token file itself or prints the new token on stdout, which is then
    written to the file, 0600), ``token.minlife`` (3600 s: renew below this),
    ``token.checktime`` (300 s between checks), ``token.timeout`` (60 s).

    ``check`` returns the seconds until the token's ``exp``.
    """

    name = "Token"
    credential_type = "token"
    keys = {
        "tokenfile": Key("path", required=True),
        "renewcommand": Key("str", ""),
        "minlife": Key("int", 3600, min=0),
        "checktime": Key("int", 300, min=1),
        "timeout": Key("float", 60.0, min=1),
    }

    def time_left(self) -> tuple[float | None, str]:
        path = self.options["tokenfile"]
        try:
            with open(path) as handle:
                return jwt_expiry(handle.read()) - time.time(), ""
        except OSError as exc:
            return None, f"cannot read {path}: {exc.strerror or exc}"
        except ValueError as exc:
            return None, f"{path}: {exc}"

    def renew(self) -> str:
        argv = shlex.split(self.options["renewcommand"])
        env = {"APF_TOKEN_FILE": self.options["tokenfile"]}
        result = run(argv, float(self.options["timeout"]), env=env)
        if not result.ok:
            return f"renewal failed: {result.describe()}"
        if looks_like_jwt(result.stdout):
            try:
                jwt_expiry(result.stdout)
            except ValueError as exc:
                return f"renewal printed a bad token: {exc}"
            write_private(self.options["tokenfile"], result.stdout.strip() + "\n")
        elif os.path.exists(self.options["tokenfile"]):
            os.chmod(self.options["tokenfile"], 0o600)
        return ""

    def check(self) -> CredentialStatus:
        path = self.options["tokenfile"]
        left, why, message = self.renew_when_due(self.time_left, bool(self.options["renewcommand"]))
        if message == "renewed" and left is not None and left < self.options["minlife"]:
            message = "renewed, still below token.minlife"
        return self.unusable(left, why, message, path) or CredentialStatus(self.section.name, True, left, message, path)
