"""Signals that come before the factory can act on them: remembered, then acted on.

``catch()`` installs handlers that remember SIGHUP, SIGTERM, SIGINT, SIGUSR1
and SIGUSR2 in ``early``; the daemon (autopyfactory/cli/daemon.py) acts on
them once the factory runs. The program's entry (autopyfactory/start.py)
calls it before any heavy import. This module imports nothing but ``signal``.
Importing it changes nothing; ``catch()`` does.
"""

from __future__ import annotations

import signal

EARLY_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
early: list[int] = []  # signals that came before the factory could act on them, in order


def _remember(signum, frame) -> None:
    early.append(signum)


def catch() -> None:
    """Remember the early signals from now on (those held blocked until now arrive here)."""
    for signum in EARLY_SIGNALS:
        signal.signal(signum, _remember)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, EARLY_SIGNALS)
