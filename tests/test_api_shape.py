"""Every JSON answer of a real factory has the shape docs/web.md shows for it, and follows the API's conventions.

The examples are read from docs/web.md (a line `` `GET /api/v1/…` `` followed by a ```json
block): the key sets must be equal and the values of the same type (null stands for
"may be null"), so the page and the code cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import requests

from tests.conftest import wait_for
from tests.web_support import RunningFactory, start_factory

DOC = Path(__file__).parent.parent / "docs" / "web.md"
EXAMPLE = re.compile(r"^`(GET|POST) (/api/v1/[^`]*)`\n```json\n(.*?)\n```", re.M | re.S)
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DATE_LIKE = re.compile(r"^\d{4}-\d\d-\d\d[T ]")
SNAKE = re.compile(r"[a-z][a-z0-9_]*")
# dicts keyed by names (queues, config keys), not fixed fields: "records" have values of one shape
MAPS = {"factory": "any", "queues": "records", "queues{}.values": "any", "auth": "records",
        "auth{}.values": "any", "monitor": "records", "monitor{}.values": "any", "cycles[].batch.peers": "any",
        "cycles[].batch.reasons": "any", "pilots[].logs": "any", "versions": "any"}


def documented() -> dict[tuple[str, str], object]:
    examples = {(method, path): json.loads(body) for method, path, body in EXAMPLE.findall(DOC.read_text())}
    assert len(examples) >= 12, "docs/web.md lost its examples"
    return examples


def kind(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def differences(doc, live, where: str = "") -> list[str]:
    """Where ``live`` has another shape than ``doc``."""
    if doc is None or live is None:
        return []
    if kind(doc) != kind(live):
        return [f"{where or 'answer'}: documented {kind(doc)}, answered {kind(live)} ({live!r:.80})"]
    if isinstance(doc, list):
        return [d for item in live if doc for d in differences(doc[0], item, where + "[]")]
    if not isinstance(doc, dict):
        return []
    if MAPS.get(where) == "any":
        return []
    if MAPS.get(where) == "records":
        model = next(iter(doc.values()), None)
        return [d for item in live.values() for d in differences(model, item, where + "{}")]
    found = []
    if set(doc) != set(live):
        found.append(f"{where or 'answer'}: keys only documented {sorted(set(doc) - set(live))}, "
                     f"only answered {sorted(set(live) - set(doc))}")
    for key in doc.keys() & live.keys():
        found += differences(doc[key], live[key], f"{where}.{key}" if where else key)
    return found


def convention_breaches(live, where: str = "") -> list[str]:
    """snake_case keys, ISO times, no epoch numbers."""
    found = []
    if isinstance(live, dict):
        for key, value in live.items():
            if MAPS.get(where) is None and not SNAKE.fullmatch(key):
                found.append(f"{where}: key {key!r} is not snake_case")
            inner = f"{where}.{key}" if where else key
            if MAPS.get(where) == "records":
                inner = f"{where}{{}}"
            found += convention_breaches(value, inner)
    elif isinstance(live, list):
        for item in live:
            found += convention_breaches(item, where + "[]")
    elif isinstance(live, int | float) and not isinstance(live, bool) and live > 1e9:
        found.append(f"{where}: {live} looks like an epoch time, not ISO 8601")
    elif isinstance(live, str) and DATE_LIKE.match(live) and not ISO.fullmatch(live) and not where.endswith("[]"):
        found.append(f"{where}: time {live!r} is not ISO 8601 UTC (…Z)")
    return found


@pytest.fixture
def api_factory(confdir):
    run = start_factory(confdir, {"ANALY_X": 3, "ANALY_Y": 0})
    # a disabled queue, and a reload (so last_reload is filled)
    queues = confdir.root / "queues.conf"
    queues.write_text(queues.read_text() + "\n[OLD_Q]\nenabled = False\nbatchsubmitplugin = Local\n"
                      "wmsstatusplugin = Local\nbatchstatusplugin = Local\n")
    assert run.factory.reload() == []
    yield run
    run.stop()


def answer(run: RunningFactory, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, run.url + path, headers=run.admin_headers(), timeout=30, **kw)


def test_every_endpoint_answers_as_documented(api_factory, tmp_path):
    examples = documented()
    wait_for(lambda: answer(api_factory, "GET", "/api/v1/queues/ANALY_X").json()["running"] == 2, what="2 pilots")
    api_factory.factory.queues["ANALY_Y"].paused = True  # a queue with a pause object
    log_file = tmp_path / "apf.log"
    log_file.write_text("2026-12-01 22:40:00,120 INFO    one\n2026-12-01 22:40:01,120 INFO    two\n")
    handler = logging.FileHandler(log_file, delay=True)
    handler.setLevel(logging.CRITICAL + 1)  # only the test writes it
    root = logging.getLogger()
    root.addHandler(handler)
    # each documented example, in this order, and the status the live factory answers it with
    statuses = {
        ("GET", "/api/v1/factory"): 200,
        ("GET", "/api/v1/queues"): 200,
        ("GET", "/api/v1/queues/ANALY_X?cycles=1"): 200,
        ("GET", "/api/v1/queues/NOPE"): 404,
        ("POST", "/api/v1/queues"): 405,
        ("POST", "/api/v1/admin/reload"): 200,
        ("POST", "/api/v1/admin/queues/ANALY_X/pause"): 200,
        ("POST", "/api/v1/admin/queues/ANALY_X/drain"): 200,
        ("POST", "/api/v1/admin/loglevel"): 200,
        ("GET", "/api/v1/admin/config"): 200,
        ("GET", "/api/v1/admin/log?lines=2"): 200,
        ("GET", "/api/v1/admin/audit?limit=2"): 200,
        ("GET", "/api/v1/queues/ANALY_X/history?since=2h&step=1h"): 200,
        ("GET", "/api/v1/queues/ANALY_X/pilots?state=running"): 200,
        ("GET", "/api/v1/admin/threads"): 200,
        ("GET", "/api/v1/admin/debug"): 200,
        ("POST", "/api/v1/admin/stop"): 202,  # last: the factory stops
    }
    # where the live factory is asked something else than the example shows
    asked = {"/api/v1/queues/ANALY_X?cycles=1": "/api/v1/queues/ANALY_X?cycles=3"}
    assert set(examples) == set(statuses), "an endpoint without its example in docs/web.md, or the other way round"
    level = root.level
    problems = []
    try:
        for key, status in statuses.items():
            method, path = key[0], asked.get(key[1], key[1])
            kw = {"json": {"level": logging.getLevelName(level).lower()}} if path.endswith("loglevel") else {}
            if path.endswith("/drain"):
                kw = {"json": {"reason": "site downtime", "until": "+8h"}}
            got = answer(api_factory, method, path, **kw)
            assert got.status_code == status, (path, got.status_code, got.text)
            assert got.headers["Content-Type"] == "application/json", path
            body = got.json()
            problems += [f"{method} {path}: {p}" for p in differences(examples[key], body)]
            problems += [f"{method} {path}: {p}" for p in convention_breaches(body)]
            if (method, path) == ("GET", "/api/v1/queues"):
                disabled = next(q for q in body["queues"] if q["name"] == "OLD_Q")
                assert (disabled["health"], disabled["enabled"]) == ("disabled", False)
                # the same view one queue at a time, resumed or not
                problems += differences(examples[key]["queues"][0], answer(
                    api_factory, "POST", "/api/v1/admin/queues/ANALY_Y/resume").json(), "resume")
                one = answer(api_factory, "GET", "/api/v1/queues/OLD_Q").json()
                assert one.pop("cycles") == [] and one == disabled
                problems += differences(examples[key]["queues"][0], one, "OLD_Q")
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
    assert not problems, "\n".join(problems)


def test_every_error_of_the_api_is_json(api_factory):
    cases = [("GET", "/api/v1/nothing", 404), ("POST", "/api/v1/queues", 405), ("PUT", "/api/v1/factory", 405),
             ("GET", "/api/v1/queues/ANALY_X?cycles=many", 400), ("GET", "/api/v1/admin/nothing", 404),
             ("GET", "/api/v1/admin/reload", 405), ("POST", "/api/v1/admin/loglevel", 413)]
    for method, path, status in cases:
        kw = {"data": b"x" * (65 * 1024)} if status == 413 else {}
        got = requests.request(method, api_factory.url + path, timeout=30, **kw)
        assert got.status_code == status, (method, path, got.status_code)
        assert got.headers["Content-Type"] == "application/json", (method, path)
        assert isinstance(got.json()["error"], str) and got.json()["error"], (method, path)
        if status == 405:
            assert got.headers["Allow"] in ("GET, HEAD", "POST"), (method, path)
    # outside the API, errors stay plain text (a browser reads them)
    assert requests.get(api_factory.url + "/logs/nothing", timeout=30).headers["Content-Type"].startswith("text/plain")


def test_the_shape_check_itself_sees_drift():
    doc = {"a": 1, "b": {"c": "x"}, "l": [{"d": True}], "n": None}
    assert differences(doc, {"a": 2.5, "b": {"c": "y"}, "l": [], "n": {"k": 1}}) == []
    assert differences(doc, {"a": "1", "b": {"c": "y"}, "l": [], "n": None}) == [
        "a: documented number, answered str ('1')"]
    assert "only answered ['e']" in differences(doc, {"a": 1, "b": {"c": "x", "e": 1}, "l": [], "n": None})[0]
    assert "documented boolean" in differences(doc, {"a": 1, "b": {"c": "x"}, "l": [{"d": 1}], "n": None})[0]
    assert convention_breaches({"factoryId": 1, "started": 1764626400.5, "t": "2026-12-01 22:40:00"}) == [
        ": key 'factoryId' is not snake_case", "started: 1764626400.5 looks like an epoch time, not ISO 8601",
        "t: time '2026-12-01 22:40:00' is not ISO 8601 UTC (…Z)"]
