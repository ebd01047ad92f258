"""APF 2.4 pilot log links: ``<baseLogDirUrl>/<YYYY-MM-DD>/<queue>/<file>`` with no ``/logs`` still reach the log.

APF 2.4's log server served baseLogDir at ``/`` on the port of
``baseLogDirUrl``; this web server serves it under ``/logs/``. A real factory
with ``baseLogDirUrl = http://127.0.0.1:<port>`` (as APF 2.4 sites have it)
hands its pilot the link (GTAG); following it reaches the pilot's log.
"""

from __future__ import annotations

import http.client
import os

import requests

from tests.conftest import wait_for
from tests.web_support import free_port, start_factory

PILOT = """#!/bin/sh
echo "GTAG=$GTAG"
echo "pilot $APFCID of $FACTORYQUEUE ran"
"""


def raw_get(port: int, path: str) -> tuple[int, str]:
    """(status, Location) of a GET of ``path`` sent as it is (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        answer = conn.getresponse()
        answer.read()
        return answer.status, answer.getheader("Location") or ""
    finally:
        conn.close()


def test_an_apf24_link_handed_to_the_pilot_reaches_its_log(confdir, tmp_path):
    port = free_port()
    pilot = tmp_path / "gtag-pilot.sh"
    pilot.write_text(PILOT)
    pilot.chmod(0o755)
    run = start_factory(confdir, {"ANALY_X": 1}, port=port, executables={"ANALY_X": str(pilot)},
                        factory_extra=f"baseLogDirUrl = http://127.0.0.1:{port}\n")
    try:
        def pilot_out():
            for out in confdir.logs.glob("*/ANALY_X/*.out"):
                text = out.read_text()
                if "ran" in text:
                    return out, text
            return None

        out, text = wait_for(pilot_out, what="a pilot's .out")
        link = text.split("GTAG=", 1)[1].split()[0]
        day, queue, name = out.relative_to(confdir.logs).parts
        assert link == f"http://127.0.0.1:{port}/{day}/{queue}/{name}"  # APF 2.4's layout, no /logs

        answer = requests.get(link, timeout=30)
        assert answer.status_code == 200 and answer.text == text
        assert [r.status_code for r in answer.history] == [301]
        assert answer.url == f"http://127.0.0.1:{port}/logs/{day}/{queue}/{name}"
        # the day's directory too (APF 2.4 listed it)
        listing = requests.get(f"http://127.0.0.1:{port}/{day}/{queue}/", timeout=30)
        assert listing.status_code == 200 and name in listing.text

        # never a way out of baseLogDir: dot segments as sent raw, encoded, or a link pointing outside
        secret = tmp_path / "outside.txt"
        secret.write_text("not a log")
        os.symlink(secret, out.parent / "escape.out")
        for path in (f"/{day}/../../outside.txt", f"/{day}/%2e%2e/%2e%2e/outside.txt", f"/{day}/..",
                     f"/{day}/{queue}/..%2f..%2f..%2foutside.txt"):
            status, location = raw_get(port, path)
            assert status == 404 or (status == 301 and location.startswith("/logs/") and ".." not in location), \
                (path, status, location)
        followed = requests.get(f"http://127.0.0.1:{port}/{day}/{queue}/escape.out", timeout=30)
        assert followed.status_code == 404 and "not a log" not in followed.text
        # other paths are not taken for log links
        assert raw_get(port, "/2026-1-1/x")[0] == 404 and raw_get(port, "/etc/passwd")[0] == 404
    finally:
        run.stop()


def warnings_for(confdir, factory: str) -> list[str]:
    confdir.write("", factory=factory)
    return [str(w) for w in confdir.load().warnings if "baseLogDirUrl" in str(w)]


def test_check_config_warns_when_baselogdirurl_lacks_the_path_the_server_serves(confdir):
    on = "logserver.enabled = True\nlogserver.port = 25880\n"
    (warning,) = warnings_for(confdir, on + "baseLogDirUrl = http://apf.example.org:25880\n")
    assert "has no /logs path" in warning and "expected http://apf.example.org:25880/logs" in warning
    (warning,) = warnings_for(confdir, on + "baseLogDirUrl = http://apf.example.org:25880/factory/logs\n")
    assert "path /factory/logs is not served" in warning and "answers 404" in warning
    assert warnings_for(confdir, on + "baseLogDirUrl = http://apf.example.org:25880/logs\n") == []
    assert warnings_for(confdir, on + "baseLogDirUrl = https://apf.example.org/logs\n") == []  # a proxy
    # APF 2.4 took the port from baseLogDirUrl
    (warning,) = warnings_for(confdir, "logserver.enabled = True\nbaseLogDirUrl = http://apf.example.org:8080\n")
    assert "set logserver.port = 8080" in warning
    (warning,) = warnings_for(confdir, "baseLogDirUrl = http://apf.example.org:25880\n")
    assert "logserver.enabled = False" in warning
    assert warnings_for(confdir, "baseLogDirUrl = https://www.example.org/apf/logs\n") == []
