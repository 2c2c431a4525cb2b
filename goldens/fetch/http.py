"""The one HTTP client for everything that talks to a CI API (``golden fetch``, the action's
pull-request comment): JSON pages, streamed downloads, redirects, and every failure as one
``FetchError`` line.

What a hostile server (or a hostile ``Link`` header) cannot do with it:

- take the token elsewhere: credentials go only to the API's own origin (scheme, host, port).
  A JSON request that is redirected, or paged by ``Link: rel="next"``, to another origin is
  refused; a download may follow a redirect to another origin (GitHub answers an artifact with a
  302 to a short-lived blob URL) but without any of the API's headers;
- change the scheme: only https, or plain http to this machine when the API itself is on this
  machine (a local test server) — never ``file:``, ``data:``, ``ftp:``;
- hold the job: each request has an overall deadline (a watchdog shuts its socket, so a server
  trickling one byte at a time cannot outlast it), and so has the whole fetch;
- fill memory or disk: a JSON page, a download, a zip's members and the bytes landed are capped
  (``Limits``, each configurable by a ``GOLDEN_FETCH_*`` variable), checked while bytes arrive.
"""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..core.errors import FormatError, GoldenError
from ..files.bounded import API_BOUNDS, cut, load_json_bytes, short

CHUNK = 1 << 16
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FetchError(GoldenError):
    """A CI API refused, failed or answered something unusable (exit 2; nothing was written).
    ``status``: the HTTP status when the API answered with an error."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one fetch may take. Each field can be set by ``GOLDEN_FETCH_<FIELD>`` (e.g.
    ``GOLDEN_FETCH_DOWNLOAD_BYTES=2147483648``)."""

    request_s: float = 300.0         # one request, headers and body, however the bytes trickle
    fetch_s: float = 3600.0          # everything one fetch (or one comment) does
    read_s: float = 60.0             # silence on the socket
    page_bytes: int = 32 << 20       # one JSON answer
    download_bytes: int = 2 << 30    # one archive
    members: int = 100_000           # entries of one zip
    member_bytes: int = 64 << 20     # one golden file out of a zip (a real one is kilobytes)
    landed_bytes: int = 256 << 20    # all golden files one fetch lands
    pages: int = 1000                # pages of one list: 100,000 jobs or artifacts
    redirects: int = 5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise FetchError(f"fetch limit {f.name} must be a positive number, got {short(value)}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Limits:
        """The defaults, with any ``GOLDEN_FETCH_<FIELD>`` variable set in ``env`` applied."""
        changes: dict[str, Any] = {}
        for f in fields(cls):
            variable = f"GOLDEN_FETCH_{f.name.upper()}"
            text = (env.get(variable) or "").strip()
            if not text:
                continue
            kind = float if f.name.endswith("_s") else int
            try:
                if len(text) > 20:
                    raise ValueError
                changes[f.name] = kind(text)
            except ValueError:
                raise FetchError(f"${variable} must be a positive {'number' if kind is float else 'integer'}, "
                                 f"got {short(text)}") from None
        return replace(cls(), **changes)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def check_base_url(url: str, what: str) -> str:
    """An API base URL: https, or http to this machine only (a token must not cross a network in clear)."""
    scheme, host, port = _origin(url)
    if scheme not in ("https", "http") or not host or port == -1:
        raise FetchError(f"{what} {short(url)} is not an http(s) URL")
    if scheme == "http" and host not in LOOPBACK:
        raise FetchError(f"{what} {short(url)}: use https (plain http is allowed to this machine only)")
    return url.rstrip("/")


def typed(item: dict[str, Any], fields_: Mapping[str, type], what: str) -> dict[str, Any]:
    """An API object with the fields this code reads, of the documented types (bool is no int)."""
    for name, kind in fields_.items():
        value = item.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FetchError(f"{what} has no {kind.__name__} {name!r}: {short(item)}")
    return item


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (GitHub's and GitLab's paging)."""
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and url.strip().startswith("<"):
            return url.strip()[1:-1]
    return None


class _Watchdog:
    """Shuts the socket of every connection of one request when its deadline passes: a per-read
    timeout alone lets a server that sends one byte every few seconds hold a read forever."""

    def __init__(self, at: float):
        self.at = at
        self.expired = False
        self._timers: list[threading.Timer] = []

    def arm(self, connection: http.client.HTTPConnection) -> None:
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._expire, (connection,))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _expire(self, connection: http.client.HTTPConnection) -> None:
        self.expired = True
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def _watched(base: type, watchdog: _Watchdog) -> type[http.client.HTTPConnection]:
    """``base`` (HTTPConnection or HTTPSConnection) with the watchdog armed at each connect."""
    class Watched(base):
        def connect(self) -> None:
            watchdog.arm(self)  # before the TCP and TLS handshakes, which can trickle too
            super().connect()

    return Watched


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # surface the 3xx as an HTTPError; ``Api._open`` decides what to send next


class _Http(urllib.request.HTTPHandler):
    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def http_open(self, req):
        return self.do_open(_watched(http.client.HTTPConnection, self.watchdog), req)


class _Https(urllib.request.HTTPSHandler):
    _context: ssl.SSLContext | None  # HTTPSHandler's own, set by its __init__ (typeshed leaves it out)

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def https_open(self, req):
        return self.do_open(_watched(http.client.HTTPSConnection, self.watchdog), req, context=self._context)


_NETWORK_ERRORS = (urllib.error.URLError, OSError, http.client.HTTPException, ValueError)


class Api:
    """One CI API: its base URL, the headers every request to it carries (auth among them), the
    service's name for messages, and the limits. ``hints`` maps an HTTP status to what to check.
    One ``Api`` serves one fetch: the fetch deadline runs from its creation."""

    def __init__(self, service: str, base_url: str, headers: Mapping[str, str], *,
                 hints: Mapping[int, str] | None = None, limits: Limits | None = None):
        self.service = service
        self.base_url = check_base_url(base_url, f"the {service} API URL")
        self.headers = dict(headers)
        self.hints = dict(hints or {})
        self.limits = limits or Limits()
        self.origin = _origin(self.base_url)
        self.loopback = self.origin[1] in LOOPBACK
        self.ends_at = time.monotonic() + self.limits.fetch_s

    # ------------------------------------------------------------ URLs

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = path if "://" in path else self.base_url + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        return url

    def _where(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return cut(parts.path + (f"?{parts.query}" if parts.query else ""))

    def _check_target(self, url: str, how: str, *, other_origin: bool) -> None:
        """Refuse a URL this client must not open: another scheme, plain http off this machine (or
        at all when the API is not on it), or — unless ``other_origin`` — another origin."""
        scheme, host, port = _origin(url)
        plain_ok = scheme == "http" and self.loopback and host in LOOPBACK
        if not host or port == -1 or not (scheme == "https" or plain_ok):
            raise FetchError(f"{self.service} API: {how} to {cut(scheme, 20)}://{cut(host, 80)}, "
                             f"which is not {'https' if not self.loopback else 'http(s) on this machine'}; refused")
        if not other_origin and (scheme, host, port) != self.origin:
            raise FetchError(f"{self.service} API: {how} to another origin ({cut(host, 80)}); refused — the "
                             f"token stays with {self.origin[1]}")

    # ------------------------------------------------------------ one request

    def _deadline(self) -> float:
        now = time.monotonic()
        if now >= self.ends_at:
            raise FetchError(f"{self.service} API: the fetch ran past its deadline of {self.limits.fetch_s:g} s "
                             "(GOLDEN_FETCH_FETCH_S)")
        return min(self.ends_at, now + self.limits.request_s)

    def _open(self, url: str, watchdog: _Watchdog, *, method: str = "GET", body: bytes | None = None,
              accept: str | None = None, other_origin: bool = False):
        """Send one request, following GET redirects; the API's headers only on its own origin."""
        first = url
        for _ in range(self.limits.redirects + 1):
            self._check_target(url, f"{method} {self._where(first)} was redirected" if url != first else
                               f"{method} {self._where(url)} goes", other_origin=other_origin or url == first)
            own = _origin(url) == self.origin
            headers = dict(self.headers) if own else {}
            if accept:
                headers["Accept"] = accept
            if body is not None:
                headers["Content-Type"] = "application/json"
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            opener = urllib.request.build_opener(_NoRedirect, _Http(watchdog), _Https(watchdog))
            timeout = max(0.001, min(self.limits.read_s, watchdog.at - time.monotonic()))
            try:
                return opener.open(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                location = exc.headers.get("Location") if exc.code in (301, 302, 303, 307, 308) else None
                if location and method == "GET":
                    exc.close()
                    url = urllib.parse.urljoin(url, location)
                    continue
                raise self._http_error(exc, request.full_url, method, watchdog) from None
            except _NETWORK_ERRORS as exc:
                raise self._network_error(exc, url, method, watchdog) from None
        raise FetchError(f"{self.service} API: more than {self.limits.redirects} redirects for "
                         f"{method} {self._where(first)}")

    def _network_error(self, exc: BaseException, url: str, method: str, watchdog: _Watchdog) -> FetchError:
        if watchdog.expired or time.monotonic() >= watchdog.at:
            return FetchError(f"{self.service} API: {method} {self._where(url)} ran past its deadline "
                              f"({self.limits.request_s:g} s a request, {self.limits.fetch_s:g} s a fetch); refused")
        reason = getattr(exc, "reason", None) or exc
        return FetchError(f"cannot reach the {self.service} API at {cut(_origin(url)[1], 80)}: "
                          f"{type(exc).__name__}: {cut(str(reason), 120)}")

    def _http_error(self, exc: urllib.error.HTTPError, url: str, method: str, watchdog: _Watchdog) -> FetchError:
        headers = exc.headers
        try:
            body = load_json_bytes(exc.read(4096) or b"null")
            message = body.get("message") if isinstance(body, dict) else None
        except (FormatError, *_NETWORK_ERRORS):
            message = None
        finally:
            exc.close()
        where = f"{method} {self._where(url)}"
        limited = exc.code == 429 or (exc.code == 403 and (headers.get("X-RateLimit-Remaining") == "0"
                                                           or headers.get("Retry-After")))
        if limited:
            when = ""
            reset, retry = headers.get("X-RateLimit-Reset") or "", headers.get("Retry-After") or ""
            if reset.isascii() and reset.isdigit() and len(reset) <= 12:
                when = " until " + time.strftime("%H:%M:%S UTC", time.gmtime(int(reset)))
            elif retry.isascii() and retry.isdigit() and len(retry) <= 12:
                when = f" for {retry} s"
            return FetchError(f"{self.service} API rate limit reached{when} ({exc.code} on {where}); try again later",
                              exc.code)
        said = f": {' '.join(str(message)[:400].split())[:200]}" if message else ""
        hint = self.hints.get(exc.code)
        reason = " ".join(str(exc.reason)[:80].split())
        return FetchError(f"{self.service} API: {exc.code} {reason} on {where}{said}" + (f" ({hint})" if hint else ""),
                          exc.code)

    def _stream(self, response: Any, limit: int, what: str, watchdog: _Watchdog, sink: Any = None) -> bytes:
        """The body of ``response``, at most ``limit`` bytes, read as it arrives (into ``sink`` when
        given); refused when it is longer, shorter than its Content-Length, or late."""
        declared = (response.headers.get("Content-Length") or "").strip()
        if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
            raise FetchError(f"{self.service} API: {what} is {int(declared):,} bytes, more than the {limit:,} "
                             "allowed; refused")
        chunks: list[bytes] = []
        total = 0
        try:
            while chunk := response.read1(CHUNK):
                total += len(chunk)
                if total > limit:
                    raise FetchError(f"{self.service} API: {what} is more than the {limit:,} bytes allowed; refused")
                if sink is not None:
                    sink.write(chunk)
                else:
                    chunks.append(chunk)
                if time.monotonic() >= watchdog.at:
                    break
        except _NETWORK_ERRORS as exc:
            if watchdog.expired or time.monotonic() >= watchdog.at:
                raise self._late(what) from None
            raise FetchError(f"{self.service} API: {what} broke off: {type(exc).__name__}") from None
        if watchdog.expired or time.monotonic() >= watchdog.at:
            raise self._late(what)
        short_by = getattr(response, "length", None)
        if short_by:
            raise FetchError(f"{self.service} API: {what} broke off {short_by:,} bytes short of its Content-Length")
        return b"".join(chunks)

    def _late(self, what: str) -> FetchError:
        return FetchError(f"{self.service} API: {what} ran past its deadline ({self.limits.request_s:g} s a request, "
                          f"{self.limits.fetch_s:g} s a fetch); refused")

    def _request_json(self, url: str, *, method: str = "GET", payload: Any = None) -> tuple[Any, Any]:
        watchdog = _Watchdog(self._deadline())
        body = None if payload is None else json.dumps(payload).encode("utf-8")
        what = f"the answer to {method} {self._where(url)}"
        try:
            with self._open(url, watchdog, method=method, body=body,
                            accept=self.headers.get("Accept", "application/json")) as response:
                raw = self._stream(response, self.limits.page_bytes, what, watchdog)
                headers = response.headers
        finally:
            watchdog.cancel()
        try:
            bounds = replace(API_BOUNDS, max_bytes=self.limits.page_bytes)
            return load_json_bytes(raw or b"null", bounds=bounds), headers
        except FormatError as exc:
            raise FetchError(f"{self.service} API answered {method} {self._where(url)} with something unusable: "
                             f"{exc}") from None

    # ------------------------------------------------------------ what callers use

    def json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        doc, _ = self._request_json(self.url(path, params))
        return doc

    def send(self, method: str, path: str, payload: Any) -> Any:
        """POST or PATCH a JSON body to the API itself (never redirected); the JSON answer."""
        doc, _ = self._request_json(self.url(path), method=method, payload=payload)
        return doc

    def pages(self, path: str, key: str | None = None, *, per_page: int = 100) -> Iterator[dict[str, Any]]:
        """Every item of a paged list: the ``Link: rel="next"`` URL while there is one (on the API's
        own origin only); without a Link header, the next page number while a page is full (what
        Megatron's script does)."""
        url: str | None = self.url(path, {"per_page": per_page, "page": 1})
        page = 1
        while url is not None:
            if page > self.limits.pages:
                raise FetchError(f"{self.service} API: more than {self.limits.pages} pages for GET {self._where(path)}")
            doc, headers = self._request_json(url)
            items = doc.get(key) if key is not None and isinstance(doc, dict) else doc
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                want = f"an object with a list {key!r}" if key else "a list"
                raise FetchError(f"{self.service} API answered GET {self._where(url)} with no {want} of objects")
            yield from items
            page += 1
            link = headers.get("Link")
            if link is not None:
                url = next_link(link)
                if url is not None:
                    url = urllib.parse.urljoin(self.base_url + "/", url)
                    self._check_target(url, f'the Link rel="next" of GET {self._where(path)} points',
                                       other_origin=False)
            else:
                url = self.url(path, {"per_page": per_page, "page": page}) if len(items) == per_page else None

    def download(self, path: str, target: Path) -> None:
        """Stream a file (an artifact archive) to ``target``, at most ``Limits.download_bytes``; a
        redirect to another origin (a blob host) is followed without the API's headers."""
        watchdog = _Watchdog(self._deadline())
        url = self.url(path)
        try:
            with self._open(url, watchdog, other_origin=True) as response, open(target, "wb") as fh:
                self._stream(response, self.limits.download_bytes, f"the download of {self._where(url)}", watchdog, fh)
        except OSError as exc:  # the target cannot be written
            raise FetchError(f"cannot write {target}: {exc.strerror or type(exc).__name__}") from None
        finally:
            watchdog.cancel()
