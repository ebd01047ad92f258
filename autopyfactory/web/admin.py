"""The admin API's bearer token and actions (reload, pause, resume, log level).

The token lives in ``[Factory] admin.tokenfile``. The file must be readable
by nobody but its owner (mode 0600 or 0400) and owned by the daemon's user
or root; otherwise the admin API stays disabled and says why. The file is
read again on every request, so rotating the token needs no restart and a
file made readable to others later disables the API at once.
"""

from __future__ import annotations

import hmac
import logging
import os
import stat
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autopyfactory.view import FactoryView

log = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class AdminToken:
    def __init__(self, path: str):
        self.path = path

    def load(self) -> tuple[str | None, str]:
        """(token, "") when the admin API may run, else (None, why not)."""
        if not self.path:
            return None, "admin.tokenfile is not set in [Factory]"
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            return None, f"cannot open admin.tokenfile {self.path}: {exc.strerror or exc}"
        with os.fdopen(fd, encoding="utf-8", errors="replace") as handle:
            info = os.fstat(handle.fileno())
            mode = stat.S_IMODE(info.st_mode)
            if mode & 0o077:
                return None, (f"admin.tokenfile {self.path} has mode {mode:04o}; "
                              f"it must be readable by its owner only (chmod 600)")
            if info.st_uid not in (os.geteuid(), 0):
                return None, f"admin.tokenfile {self.path} is owned by uid {info.st_uid}, not by this user or root"
            token = handle.read(4096).strip()
        if len(token) < 16:
            return None, f"admin.tokenfile {self.path} holds no token of at least 16 characters"
        return token, ""

    def check(self, authorization: str | None) -> tuple[bool, str]:
        """(allowed, why not) for an ``Authorization`` header."""
        token, why = self.load()
        if token is None:
            return False, f"admin API disabled: {why}"
        scheme, _, offered = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            return False, "missing bearer token (Authorization: Bearer <token from admin.tokenfile>)"
        if not hmac.compare_digest(offered.strip().encode(), token.encode()):
            return False, "wrong token"
        return True, ""


def reload_factory(factory: FactoryView) -> tuple[int, dict[str, Any]]:
    """Apply the configuration files again; (HTTP status, JSON answer).

    A configuration with errors is refused whole (400, the problems); the
    running one stays in force.
    """
    problems = [str(p) for p in factory.reload()]
    if problems:
        log.error("reload refused, the running configuration stays: %s", "; ".join(problems))
        return 400, {"error": "configuration has errors; the running configuration stays",
                     "problems": problems}
    return 200, {"reloaded": True, "message": "configuration reloaded", "changes": factory.last_reload}


def set_loglevel(level: str) -> str:
    level = level.strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"unknown log level (expected one of {', '.join(LOG_LEVELS)}, got {level!r})")
    logging.getLogger().setLevel(level.upper())
    return level
