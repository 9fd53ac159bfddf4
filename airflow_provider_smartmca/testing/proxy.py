"""A real HTTP proxy on loopback, with the faults of a proxy between a client and the emulator.

A client reaches it as production reaches the API: ``HTTPS_PROXY``, ``HTTP_PROXY`` or
``ALL_PROXY`` set to :attr:`Proxy.url`. It serves

- CONNECT tunnels (what an ``https://`` base URL uses): an opaque relay of the bytes. With
  ``intercept=(cert, key)`` it answers TLS inside the tunnel itself, as a TLS-inspecting proxy
  does, reads the requests, and sends them on in plain HTTP to the CONNECT target (a plain-HTTP
  emulator); the client must trust ``cert`` (the connection extra ``verify_ssl``);
- plain HTTP forwarding (an ``http://`` base URL): absolute-form requests, sent on to their host.

Faults (see ``docs/emulator-faults.md``):

- :meth:`Proxy.drop_after_forward`: a request is sent on, the server's answer is awaited (so the
  server acted), and the client's connection is closed without a byte of it. The proxy must read
  the request: plain forwarding, or an intercepted tunnel. An opaque tunnel passes on a close by
  the server: use the emulator's ``drop_after`` fault there.
- :meth:`Proxy.refuse_connect`: CONNECT is answered with an error status (407, 502...) and nothing
  is forwarded.

Requests are read by ``Content-Length`` (no chunked request bodies: neither transport sends one).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

__all__ = ["Proxy"]

_REASONS = {403: "Forbidden", 407: "Proxy Authentication Required", 502: "Bad Gateway", 503: "Unavailable"}
_IDLE_SECONDS = 30.0


class Proxy:
    """
    An HTTP proxy on ``host``, in daemon threads, until :meth:`close` (or the ``with`` block ends).

    :param intercept: (certificate, key) PEM files: answer TLS inside CONNECT tunnels (see above).
    :param host: the interface to listen on.
    """

    def __init__(
        self, intercept: tuple[str | Path, str | Path] | None = None, host: str = "127.0.0.1"
    ) -> None:
        self._tls: ssl.SSLContext | None = None
        if intercept is not None:
            self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._tls.load_cert_chain(str(intercept[0]), str(intercept[1]))
        self._lock = threading.Lock()
        self._drops: dict[str | None, int] = {}
        self._refusal: tuple[int, int | None] | None = None
        self._listener = socket.create_server((host, 0))
        #: The proxy URL, for ``HTTPS_PROXY`` and friends.
        self.url = f"http://{host}:{self._listener.getsockname()[1]}"
        #: Every request line read, in order: CONNECT lines, forwarded and intercepted requests.
        self.request_lines: list[str] = []
        #: How many connections :meth:`drop_after_forward` closed.
        self.dropped = 0
        threading.Thread(target=self._accept, name="smartmca-proxy", daemon=True).start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop accepting connections (open ones end when either side closes)."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()

    # -- faults -------------------------------------------------------------------------------

    def drop_after_forward(self, method: str | None = "POST", count: int = 1) -> None:
        """
        Drop the next ``count`` requests with ``method`` (None: any) once the server has answered.

        :param method: the HTTP method to match, or None.
        :param count: how many requests to drop; adds to what is left of an earlier call.
        """
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + count

    def refuse_connect(self, status: int = 407, count: int | None = None) -> None:
        """
        Answer the next ``count`` CONNECTs (None: every one) with ``status``; nothing is forwarded.

        :param status: the status, e.g. 407 (with a ``Proxy-Authenticate`` challenge) or 502.
        :param count: how many CONNECTs, or None for all until :meth:`clear`.
        """
        with self._lock:
            self._refusal = (status, count)

    def clear(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._drops.clear()
            self._refusal = None

    def _take_drop(self, method: str) -> bool:
        with self._lock:
            for key in (method, None):
                if self._drops.get(key, 0) > 0:
                    self._drops[key] -= 1
                    return True
        return False

    def _take_refusal(self) -> int | None:
        with self._lock:
            if self._refusal is None:
                return None
            status, count = self._refusal
            if count is not None:
                self._refusal = (status, count - 1) if count > 1 else None
            return status

    # -- serving ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            with client:
                head, rest = _read_head(client)
                if head:
                    self._route(client, head, rest)
        except OSError:  # a client or server that went away, a refused TLS handshake
            return

    def _route(self, client: socket.socket, head: bytes, rest: bytes) -> None:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT":
            parts = urlsplit(target)
            upstream = socket.create_connection((parts.hostname, parts.port or 80), timeout=10)
            self._relay(client, upstream, head + rest, read_requests=True)
            return
        self.request_lines.append(line)
        status = self._take_refusal()
        if status is not None:
            challenge = b'Proxy-Authenticate: Basic realm="proxy"\r\n' if status == 407 else b""
            reason = _REASONS.get(status, "Refused").encode()
            client.sendall(b"HTTP/1.1 %d %s\r\n%sContent-Length: 0\r\n\r\n" % (status, reason, challenge))
            return
        host, port = target.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=10)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if self._tls is None:
            self._relay(client, upstream, rest, read_requests=False)
            return
        with self._tls.wrap_socket(client, server_side=True) as inner:
            self._relay(inner, upstream, b"", read_requests=True)

    def _relay(
        self, client: socket.socket, upstream: socket.socket, pending: bytes, read_requests: bool
    ) -> None:
        """Relay both ways until either side closes; with ``read_requests``, apply the drop fault."""
        dropping = False
        upstream.settimeout(None)
        with upstream, selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(upstream, selectors.EVENT_READ)
            while True:
                if read_requests:
                    pending, drop = self._send_requests(pending, upstream)
                    dropping = dropping or drop
                elif pending:
                    upstream.sendall(pending)
                    pending = b""
                buffered = isinstance(client, ssl.SSLSocket) and client.pending()
                ready = [client] if buffered else [key.fileobj for key, _ in selector.select(_IDLE_SECONDS)]
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    if sock is client:
                        pending += data
                    elif dropping:  # the server has answered: close, and send the client nothing
                        self.dropped += 1
                        return
                    else:
                        client.sendall(data)

    def _send_requests(self, pending: bytes, upstream: socket.socket) -> tuple[bytes, bool]:
        """Send on each complete request in ``pending``; return the rest and whether one is dropped."""
        drop = False
        while (end := pending.find(b"\r\n\r\n")) >= 0:
            head = pending[: end + 4]
            size = end + 4 + _content_length(head)
            if len(pending) < size:
                break
            line = head.split(b"\r\n", 1)[0].decode("latin-1")
            self.request_lines.append(line)
            drop = self._take_drop(line.split(" ", 1)[0]) or drop
            upstream.sendall(pending[:size])
            pending = pending[size:]
        return pending, drop


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The first request head (to its blank line) and the bytes read past it; (b"", b"") at EOF."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
    end = data.index(b"\r\n\r\n") + 4
    return data[:end], data[end:]


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return 0
