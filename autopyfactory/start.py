"""The ``autopyfactory`` program's first step: signals are caught before anything heavy is loaded.

The console script runs ``main`` here, which imports nothing but ``signal``
before it installs handlers that remember SIGHUP, SIGTERM, SIGINT, SIGUSR1
and SIGUSR2; the daemon (autopyfactory/cli/daemon.py) acts on them once the
factory runs. Before, the handlers came only after the daemon's imports (the
web server, persistence, every plugin: 0.1-0.3 s), and a SIGHUP then (a
``systemctl reload`` right after start) killed the daemon with status 129.

Across the daemon's one re-execution (autopyfactory/memory.py) the signals
are blocked, so they wait as pending for the handlers of the new program.
The handlers themselves are in autopyfactory/earlysignals.py.
"""

from __future__ import annotations

from autopyfactory import earlysignals


def main() -> int:
    earlysignals.catch()
    from autopyfactory.cli import daemon

    return daemon.main()
