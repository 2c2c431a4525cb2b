"""A hostile HTTP server on the loopback, and zip archives whose headers lie.

Why: ``golden fetch``'s client must survive an API that lies (wrong lengths, redirects to other
origins, endless pages, broken archives) without a traceback, a hang or a leaked token. Where
``ci_server.FakeCI`` answers as GitHub and GitLab do, ``HostileServer`` answers whatever a test
scripts, byte for byte; ``patched_zip`` makes the archives such a server hands out.
"""
from __future__ import annotations

import io
import json
import struct
import threading
import zipfile
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HostileServer:
    """A loopback HTTP server that answers each path with what a test scripts: ``route(path, fn)``,
    where ``fn(handler)`` writes the whole answer (status line, headers, body — lies included).
    ``requests`` records (path, headers) of every request; the server stops at ``stop()``."""

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 30
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                path = self.path.split("?")[0]
                server.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                if self.headers.get("Content-Length"):
                    self.rfile.read(int(self.headers["Content-Length"]))
                answer = server.routes.get(path)
                try:
                    if answer is None:
                        self.send(404, {"message": "Not Found"})
                    else:
                        answer(self)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                self.close_connection = True

            do_GET = do_POST = do_PATCH = _any

            def send(self, status: int, body: Any, headers: Mapping[str, str] | None = None,
                     length: int | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, path: str, answer: Any) -> None:
        self.routes[path] = answer

    def json(self, path: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.route(path, lambda h: h.send(status, body, headers))

    def reached(self, token: str) -> list[str]:
        """Paths of the requests that carried ``token`` in any header."""
        return [path for path, headers in self.requests if any(token in v for v in headers.values())]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def patched_zip(members: Mapping[str, bytes], *, method: int | None = None, flags: int | None = None,
                corrupt: bool = False) -> bytes:
    """A zip whose headers lie: every member's compression ``method`` and/or general-purpose
    ``flags`` (bit 0: encrypted) patched in the local and central headers; ``corrupt``: the deflate
    data of each member overwritten with bytes that are not deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    raw = bytearray(buffer.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(raw))) as archive:
        infos = archive.infolist()
    for info in infos:
        local = info.header_offset
        name_len, extra_len = struct.unpack_from("<HH", raw, local + 26)
        if corrupt:
            start = local + 30 + name_len + extra_len
            raw[start:start + info.compress_size] = b"\xff" * info.compress_size
        if flags is not None:
            struct.pack_into("<H", raw, local + 6, flags)
        if method is not None:
            struct.pack_into("<H", raw, local + 8, method)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        if flags is not None:
            struct.pack_into("<H", raw, central + 8, flags)
        if method is not None:
            struct.pack_into("<H", raw, central + 10, method)
        central = raw.find(b"PK\x01\x02", central + 4)
    return bytes(raw)
