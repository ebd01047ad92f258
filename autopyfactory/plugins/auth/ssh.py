"""SSH profiles: the key pair that BOSCO/SSH submission logs in with."""

from __future__ import annotations

import os
import stat

from autopyfactory.config import Key
from autopyfactory.info import CredentialStatus
from autopyfactory.interfaces import AuthPlugin


class SSH(AuthPlugin):
    """An SSH key pair (no expiry).

    Keys: ``ssh.privatekey`` (required), ``ssh.publickey``,
    ``ssh.passwordfile``, ``ssh.checktime`` (3600 s). ``check`` is ok when the
    files exist and the private key is readable by its owner only (ssh
    refuses it otherwise); ``seconds_left`` is None (keys do not expire).
    """

    name = "SSH"
    credential_type = "ssh"
    keys = {
        "privatekey": Key("path", required=True),
        "publickey": Key("path", ""),
        "passwordfile": Key("path", ""),
        "checktime": Key("int", 3600, min=1),
    }

    def check(self) -> CredentialStatus:
        name, key = self.section.name, self.options["privatekey"]
        for label in ("privatekey", "publickey", "passwordfile"):
            path = self.options[label]
            if path and not os.path.isfile(path):
                return CredentialStatus(name, False, None, f"ssh.{label} {path} does not exist", key)
        mode = stat.S_IMODE(os.stat(key).st_mode)
        if mode & 0o077:
            return CredentialStatus(name, False, None,
                                    f"ssh.privatekey {key} is readable by others (mode {mode:04o}, expected 0600)", key)
        return CredentialStatus(name, True, None, "", key)
