"""A TCP engine address on loopback: 127.0.0.1:<free port> forwarded to the outer
engine's unix socket, for tests of contexts and heartbeats over TCP, and over TLS with
client certificates checked (as ``dockerd --tlsverify`` does)."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading

from pytest_dockervol._engine.endpoint import DEFAULT_ADDRESS

#: The engine the outer suite talks to.
ENGINE = os.environ.get("DOCKER_HOST") or DEFAULT_ADDRESS


def engine_socket() -> str:
    """The outer engine's unix socket path (these tests need a local engine)."""
    assert ENGINE.startswith("unix://"), f"these tests need a unix-socket engine, not {ENGINE}"
    return ENGINE[len("unix://") :]


class LoopbackProxy:
    """127.0.0.1:<free port> forwarded to the engine's unix socket: a TCP engine address
    for a context, on loopback only. With ``tls``, it speaks TLS and forwards only clients
    whose certificate the context's CA signed (``tls_refused`` counts the others)."""

    def __init__(self, target: str, tls: ssl.SSLContext | None = None) -> None:
        self.target = target
        self.tls = tls
        self.connections = 0
        self.tls_refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stopping = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            # No Nagle: a TLS record split over two writes would wait for a delayed ACK
            # (40 ms per answer), which no real engine makes its clients wait.
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets.append(client)
            # The handshake happens off the accepting thread: a client that never
            # finishes it must not hold up the others.
            serve = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(serve)
            serve.start()

    def _serve(self, client: socket.socket) -> None:
        if self.tls is not None:
            try:
                client = self.tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                self.tls_refused += 1
                client.close()
                return
            self._sockets.append(client)
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        upstream.connect(self.target)
        self.connections += 1
        self._sockets.append(upstream)
        for source, sink in ((client, upstream), (upstream, client)):
            pump = threading.Thread(target=_pump, args=(source, sink), daemon=True)
            self._threads.append(pump)
            pump.start()

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=10)
        for sock in self._sockets:
            sock.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until it ends, then pass the end on: a half close, or for TLS
    (which has none: ``SSLSocket.shutdown`` would drop the TLS layer under the other
    direction's feet) the end of the whole connection."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        if isinstance(sink, ssl.SSLSocket):
            socket.socket.shutdown(sink, socket.SHUT_RDWR)
        else:
            sink.shutdown(socket.SHUT_WR)
