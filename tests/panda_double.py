"""A PanDA server double: a real HTTP server on 127.0.0.1 with programmable answers.

Serves ``/api/v1/statistics/active_job_stats_by_site`` (recorded shape, see
tests/data/panda/) and ``/queueinfo`` (CRIC-like queue listing). ``mode``
chooses the answer: good, http500, hang, truncated, cut, false, emptydata,
nosite (a good answer without the TEST_SITE_* sites, as PanDA omits idle
sites), notjson, pickle, huge (50 MB, well-formed), drip (headers, then the
body one byte every ``DRIP_GAP`` s), dripheaders (a header line that never
ends, a byte at a time). A drip goes on after the mode changes, until the
client hangs up, ``release`` is set or ``DRIP_FOR`` s passed. ``down()`` closes the
listening socket; ``up()`` serves again on the same port.
"""

from __future__ import annotations

import copy
import json
import pickle
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).parent / "data" / "panda"
STATS_PATH = "/api/v1/statistics/active_job_stats_by_site"
HUGE_BYTES = 50 * 1000 * 1000
DRIP_GAP = 0.1  # seconds between two bytes (or header lines) of a dripping answer
DRIP_FOR = 60.0
# states the real server lists for every site it lists, with 0 when no job is in them (panda-server 0.8.1)
ALWAYS_LISTED = ("assigned", "activated", "running")


def recorded_stats() -> dict:
    return json.loads((DATA / "active_job_stats_by_site.json").read_text())


def recorded_queueinfo() -> dict:
    return json.loads((DATA / "queueinfo.json").read_text())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, *args, **kwargs):
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """A server going down also ends its kept-alive connections."""
        with self.conn_lock:
            connections = list(self.connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class PandaDouble:
    def __init__(self):
        self.mode = "good"
        self.stats = recorded_stats()
        self.queueinfo = recorded_queueinfo()
        self.requests: dict[str, int] = {}
        self.headers: list[dict[str, str]] = []
        self.release = threading.Event()  # ends hanging answers
        self.lock = threading.Lock()
        self.port = 0
        self.ssl_context: ssl.SSLContext | None = None  # set before up() to serve HTTPS
        self.client_subjects: list = []  # client certificate subjects seen (HTTPS)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ control
    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/api/v1"

    @property
    def queueinfo_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/queueinfo"

    def count(self, path: str = STATS_PATH) -> int:
        with self.lock:
            return self.requests.get(path, 0)

    def set_site(self, site: str, **counts: int) -> None:
        """The site's job counts; like the real server, ``ALWAYS_LISTED`` states are there, at 0 when not given
        (tests/test_panda_server.py checks the double against a real server)."""
        with self.lock:
            self.stats = copy.deepcopy(self.stats)
            self.stats["data"][site] = {**dict.fromkeys(ALWAYS_LISTED, 0), **counts}

    def up(self) -> None:
        self._server = _Server(("127.0.0.1", self.port), self._handler())
        self.port = self._server.server_address[1]
        if self.ssl_context is not None:
            self._server.socket = self.ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="panda-double", daemon=True)
        self._thread.start()

    def down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.drop_connections()
            self._server = None

    def close(self) -> None:
        self.release.set()
        self.down()

    # ------------------------------------------------------------ answers
    def answer(self, path: str) -> tuple[int, bytes | None]:
        """(status, body) for the current mode; body None = streamed specially."""
        with self.lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            stats, queueinfo, mode = self.stats, self.queueinfo, self.mode
        if path == "/queueinfo":
            return 200, json.dumps(queueinfo).encode()
        if path != STATS_PATH:
            return 404, b'{"success": false, "message": "no such endpoint"}'
        good = json.dumps(stats).encode()
        if mode == "good":
            return 200, good
        if mode == "http500":
            return 500, b"<html>Internal Server Error</html>"
        if mode == "false":
            return 200, json.dumps({"success": False, "message": "database connection lost", "data": {}}).encode()
        if mode == "emptydata":
            return 200, json.dumps({"success": True, "message": "", "data": {}}).encode()
        if mode == "nosite":
            data = {k: v for k, v in stats["data"].items() if not k.startswith("TEST_SITE")}
            return 200, json.dumps({"success": True, "message": "", "data": data}).encode()
        if mode == "truncated":
            return 200, good[: len(good) // 2]
        if mode == "notjson":
            return 200, b"<html>maintenance</html>"
        if mode == "pickle":
            return 200, pickle.dumps(stats)
        return 200, None  # hang, cut, huge

    def _handler(self):
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with double.lock:
                    double.headers.append(dict(self.headers))
                    if hasattr(self.connection, "getpeercert"):
                        double.client_subjects.append((self.connection.getpeercert() or {}).get("subject"))
                path = self.path.split("?")[0]
                status, body = double.answer(path)
                try:
                    if body is not None:
                        self._send(status, body)
                    elif double.mode == "hang":
                        double.release.wait(30)
                        self._send(200, json.dumps(double.stats).encode())
                    elif double.mode == "cut":
                        body = json.dumps(double.stats).encode()
                        self.send_response(200)
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(body)))
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                    elif double.mode == "huge":
                        self._send_huge()
                    elif double.mode in ("drip", "dripheaders"):
                        self._drip(double.mode == "dripheaders")
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _send(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _drip(self, in_headers: bool):
                body = json.dumps(double.stats).encode()
                head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                if in_headers:  # one endless header line, a byte at a time
                    parts = [head + b"X-Drip: "] + [b"x"] * int(DRIP_FOR / DRIP_GAP)
                else:
                    head += b"Content-Length: %d\r\n\r\n" % len(body)
                    parts = [head] + [body[i:i + 1] for i in range(len(body))]
                stop = time.monotonic() + DRIP_FOR
                for part in parts:
                    self.wfile.write(part)
                    self.wfile.flush()
                    if double.release.wait(DRIP_GAP) or time.monotonic() > stop:
                        break
                self.close_connection = True

            def _send_huge(self):
                # well-formed JSON of HUGE_BYTES: the recorded sites plus one site with a long name
                # (chunked, so the client learns the size only by reading)
                head = json.dumps(double.stats)[:-2].encode() + b', "PAD": {"'
                tail = b'": 1}}}'
                pad = HUGE_BYTES - len(head) - len(tail)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                block = b"x" * (1 << 20)
                parts = [head]
                while pad > 0:
                    parts.append(block[: min(pad, len(block))])
                    pad -= len(parts[-1])
                parts.append(tail)
                for part in parts:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")

        return Handler
