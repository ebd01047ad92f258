"""Small HTTP servers on 127.0.0.1 that misbehave the way a remote configuration source can:
trickling, oversized, hanging. Each runs in a daemon thread until ``stop()``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Server:
    """Answers every connection with ``serve(conn)``; ``url`` points at it."""

    def __init__(self, serve):
        self.serve = serve
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/queues.conf"
        self.stopped = threading.Event()
        self.connections = 0
        self.sent = 0  # bytes sent, all connections
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            conn.recv(65536)  # the request
            self.serve(self, conn)

    def send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()
        self.thread.join(5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def answer(text: str):
    body = text.encode()

    def serve(server: Server, conn: socket.socket) -> None:
        server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return serve


def trickle(period: float = 0.2, headers_too: bool = False, seconds: float = 120):
    """A byte every ``period`` seconds, for ``seconds``: in the body, or already in the headers."""
    def serve(server: Server, conn: socket.socket) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
        if not headers_too:
            server.send(conn, head + b"\r\n[Q]\n")
        end = time.monotonic() + seconds
        filler = (head + b"X-Pad: " if headers_too else b"# ")
        for byte in (filler + b"x" * 10**6):
            if server.stopped.is_set() or time.monotonic() > end:
                return
            server.send(conn, bytes([byte]))
            time.sleep(period)
    return serve


def oversized(total: int, declare: bool):
    """An answer of ``total`` bytes, its length declared or sent chunked."""
    def serve(server: Server, conn: socket.socket) -> None:
        block = b"# " + b"x" * 65533 + b"\n"
        if declare:
            server.send(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % total)
            sent = 0
            while sent < total and not server.stopped.is_set():
                server.send(conn, block)
                sent += len(block)
            return
        server.send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        sent = 0
        while sent < total and not server.stopped.is_set():
            server.send(conn, b"%x\r\n" % len(block) + block + b"\r\n")
            sent += len(block)
        server.send(conn, b"0\r\n\r\n")
    return serve
