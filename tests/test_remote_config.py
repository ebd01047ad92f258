"""A remote configuration (config/remote.py): a total deadline and a size cap enforced while reading,
the last good copy on disk, and cancelling; each against a real misbehaving HTTP server on 127.0.0.1."""

from __future__ import annotations

import os
import stat
import threading
import time

import pytest

from autopyfactory.config.remote import FetchError, cache_file, fetch
from tests.remote_servers import Server, answer, oversized, trickle

GOOD = "[Q]\nwmsqueue = Q\n"
# a server trickling a byte every 0.2 s keeps it up for 120 s: any bound below that is the deadline's
SLACK = 30.0


def test_a_good_answer_is_returned_and_cached(tmp_path):
    cache = str(tmp_path / "cache" / "q.cache")
    with Server(answer(GOOD)) as server:
        got = fetch(server.url, deadline=10, max_bytes=10_000, cache_path=cache)
    assert (got.text, got.source, got.warning) == (GOOD, "remote", None)
    assert open(cache).read() == GOOD
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_trickling_server_is_cut_at_the_deadline(headers_too):
    with Server(trickle(0.2, headers_too=headers_too)) as server:
        started = time.monotonic()
        with pytest.raises(FetchError, match=r"no whole answer within 1 s"):
            fetch(server.url, deadline=1, max_bytes=10**9)
        assert time.monotonic() - started < SLACK
        assert server.sent > 0  # it did trickle: each read alone would never have timed out


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
def test_an_oversized_answer_is_refused_while_reading(declare):
    with Server(oversized(200 * 1024 * 1024, declare=declare)) as server:
        with pytest.raises(FetchError, match="larger than 1048576"):
            fetch(server.url, deadline=60, max_bytes=1024 * 1024)
    # the reader stopped near the cap, not after 200 MB (socket buffers hold a few MB at most)
    assert server.sent < 40 * 1024 * 1024


def test_stopping_cancels_a_fetch_under_way():
    cancel = threading.Event()
    with Server(trickle(0.2)) as server:
        threading.Timer(0.5, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(FetchError, match="cancelled"):
            fetch(server.url, deadline=600, max_bytes=10**9, cancel=cancel)
        assert time.monotonic() - started < SLACK


def test_the_last_good_copy_stands_in_when_the_source_fails(tmp_path):
    cache = cache_file(str(tmp_path), "http://127.0.0.1/queues.conf")
    with Server(answer(GOOD)) as server:
        fetch(server.url, 10, 10_000, cache)
        url = server.url
    got = fetch(url, 5, 10_000, cache)  # nobody listens any more
    assert got.source == "cache" and got.text == GOOD
    assert "using the last good copy" in got.warning and url in got.warning


def test_an_answer_the_check_refuses_is_not_cached(tmp_path):
    cache = str(tmp_path / "q.cache")

    def parses(text: str) -> None:
        if not text.startswith("["):
            raise ValueError("not a configuration file")

    with Server(answer(GOOD)) as server:
        fetch(server.url, 10, 10_000, cache, check=parses)
    with Server(answer("<html>maintenance</html>")) as server:
        got = fetch(server.url, 10, 10_000, cache, check=parses)
    assert got.source == "cache" and got.text == GOOD and "not a configuration file" in got.warning
    assert open(cache).read() == GOOD


def test_without_a_cached_copy_the_error_says_why_and_hides_secrets(tmp_path):
    with Server(answer("")) as server:
        url = server.url.replace("http://", "http://apf:S3cr3t@") + "?token=T0k3n"
    with pytest.raises(FetchError) as caught:
        fetch(url, 5, 10_000, str(tmp_path / "none.cache"))
    assert "no cached copy yet" in str(caught.value)
    assert "S3cr3t" not in str(caught.value) and "T0k3n" not in str(caught.value)
