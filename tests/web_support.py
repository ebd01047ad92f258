"""A real factory (Local plugins) with its web server on a free port, for the web, control and browser tests."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from autopyfactory.factory import Factory, build_factory
from autopyfactory.localbatch import LocalBatch
from tests.conftest import ConfDir, local_queue

TOKEN = "t0ken-for-tests-" + "a" * 24

# A pilot that claims one work item of its queue's spool, then stays running
# until the test touches its stop file.
PILOT = """#!/bin/sh
d="$APF_WMS_SPOOLDIR/$FACTORYQUEUE"
mkdir -p "$d/claimed"
for f in "$d"/*.json; do mv "$f" "$d/claimed/" 2>/dev/null && break; done
echo "pilot $APFCID of $FACTORYQUEUE started"
echo "pilot $APFCID stderr" >&2
n=0
while [ ! -e "{stop}" ] && [ $n -lt 1200 ]; do sleep 0.2; n=$((n+1)); done
echo "pilot $APFCID done"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningFactory:
    factory: Factory
    confdir: ConfDir
    url: str
    port: int
    token_file: Path
    stop_file: Path

    @property
    def batch(self) -> LocalBatch:
        return self.factory.context.shared("localbatch", LocalBatch)

    def admin_headers(self, token: str = TOKEN) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def stop(self) -> None:
        self.stop_file.touch()
        self.factory.stop()


def start_factory(confdir: ConfDir, queues: dict[str, int], *, maxrunning: int = 2,
                  factory_extra: str = "", monitor: str = "", queue_extra: dict | None = None,
                  port: int | None = None, auth: str = "", executables: dict[str, str] | None = None,
                  sections: str = "") -> RunningFactory:
    """A factory with one Local queue per name in ``queues`` (value: work items to seed).

    ``executables``: a queue's own pilot instead of PILOT; ``sections``: more queue sections as text.
    """
    root = confdir.root
    stop_file = root / "pilots.stop"
    pilot = root / "pilot.sh"
    pilot.write_text(PILOT.format(stop=stop_file))
    pilot.chmod(0o755)
    token_file = root / "admin.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    port = port or free_port()
    text = "".join(
        local_queue(name, confdir.spool, executable=(executables or {}).get(name, str(pilot)),
                    **{"batchsubmit.local.maxrunning": str(maxrunning)}, **(queue_extra or {}))
        for name in queues
    ) + sections
    confdir.write(text, factory=(
        f"logserver.enabled = True\nlogserver.port = {port}\nadmin.tokenfile = {token_file}\n"
        f"factoryAdminEmail = ops@example.org\n{factory_extra}"
    ), monitor=monitor, auth=auth)
    for name, items in queues.items():
        confdir.work(name, items)
    factory = build_factory(str(confdir.root / "factory.conf"))
    factory.start()
    return RunningFactory(factory, confdir, f"http://127.0.0.1:{port}", port, token_file, stop_file)
