"""The web server of a real factory under slowloris and connection floods from 127.0.0.1.

Each attack is bounded: it runs in a thread for a fixed time and then closes
every socket it opened, whatever the server did.
"""

from __future__ import annotations

import configparser
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from autopyfactory.web.server import MAX_CONNECTIONS, REQUEST_TIMEOUT
from tests.conftest import wait_for
from tests.web_support import TOKEN, RunningFactory, start_factory

ANSWER_WITHIN = 5.0  # seconds every check may take during an attack


@pytest.fixture
def slowloris_factory(confdir):
    run = start_factory(confdir, {"ALPHA": 1})
    yield run
    run.stop()


class Attack:
    """``count`` sockets to the server; each sends a request head one line every ``gap`` s (or nothing)."""

    def __init__(self, port: int, count: int, seconds: float, gap: float = 0.5, silent: bool = False):
        self.port, self.count, self.seconds, self.gap, self.silent = port, count, seconds, gap, silent
        self.sockets: list[socket.socket] = []
        self.closed_by_server = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="attack", daemon=True)

    def __enter__(self) -> Attack:
        for _ in range(self.count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.setblocking(False)
            if not self.silent:
                sock.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            self.sockets.append(sock)
        self.thread.start()
        return self

    def _run(self) -> None:
        ends = time.monotonic() + self.seconds
        line = 0
        while not self.stop.wait(self.gap) and time.monotonic() < ends:
            line += 1
            for sock in list(self.sockets):
                try:
                    if not self.silent:
                        sock.send(b"X-Slow-%d: 1\r\n" % line)
                    elif sock.recv(1) == b"":
                        raise ConnectionResetError
                except BlockingIOError:
                    pass
                except OSError:  # the server hung up on it
                    self.closed_by_server += 1
                    self.sockets.remove(sock)
                    sock.close()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()


def check_answers(run: RunningFactory) -> None:
    """The status page, the API and an admin call each answer within ANSWER_WITHIN seconds."""
    for path in ("/", "/api/v1/queues"):
        assert requests.get(run.url + path, timeout=ANSWER_WITHIN).status_code == 200, path
    answer = requests.post(run.url + "/api/v1/admin/loglevel", json={"level": "info"}, timeout=ANSWER_WITHIN,
                           headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200


def test_slowloris_does_not_take_the_server_down(slowloris_factory):
    # 300 connections trickling a header line every 0.5 s for longer than a request may take
    with Attack(slowloris_factory.port, 300, seconds=REQUEST_TIMEOUT + 6) as attack:
        for _ in range(3):
            check_answers(slowloris_factory)
        # the trickling connections are cut once their request head is overdue
        wait_for(lambda: not attack.sockets, what="the server to cut every trickling connection",
                 timeout=REQUEST_TIMEOUT + 5, every=0.2)
    check_answers(slowloris_factory)


def test_a_flood_of_idle_connections_does_not_take_the_server_down(slowloris_factory):
    # more silent connections than the server keeps: the oldest idle ones make room
    with Attack(slowloris_factory.port, 600, seconds=ANSWER_WITHIN * 4, silent=True, gap=0.1) as attack:
        check_answers(slowloris_factory)
        wait_for(lambda: attack.closed_by_server >= 600 - MAX_CONNECTIONS,
                 what=f"the server to close {600 - MAX_CONNECTIONS} idle connections", timeout=ANSWER_WITHIN, every=0.1)
    check_answers(slowloris_factory)


def test_the_shipped_configuration_listens_on_loopback_only():
    config = configparser.ConfigParser(interpolation=None)
    config.read(Path(__file__).parent.parent / "etc" / "apf" / "factory.conf")
    assert config["Factory"]["logserver.bind"] == "127.0.0.1"
