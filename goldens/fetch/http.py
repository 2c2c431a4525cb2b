"""A small REST client for the CI APIs (GitHub, GitLab) on the standard library: JSON pages,
streamed downloads, redirects, and every failure as one ``FetchError`` line.

Redirects are followed by hand so that credentials never leave the API's origin: GitHub answers
an artifact download with a 302 to a short-lived blob URL on another host, and urllib's own
redirect handler would send the ``Authorization`` header along. Tokens travel only over https,
or plain http to this machine (a local test server); they never appear in a message.
"""
from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..errors import GoldenError

TIMEOUT_S = 60
MAX_REDIRECTS = 5
MAX_PAGES = 1000  # 100,000 jobs or artifacts: far beyond any real run; a loop guard
CHUNK = 1 << 16
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class FetchError(GoldenError):
    """A CI API refused, failed or answered something unusable (exit 2; nothing was written).
    ``status``: the HTTP status when the API answered with an error."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's hook
        return None  # surface the 3xx as an HTTPError; ``Api._open`` decides what to send next


_OPENER = urllib.request.build_opener(_NoRedirect)


def check_base_url(url: str, what: str) -> str:
    """An API base URL: https, or http to this machine only (a token must not cross a network in clear)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FetchError(f"{what} {url!r} is not an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        raise FetchError(f"{what} {url!r}: use https (plain http is allowed to this machine only)")
    return url.rstrip("/")


def typed(item: dict[str, Any], fields: Mapping[str, type], what: str) -> dict[str, Any]:
    """An API object with the fields this code reads, of the documented types (bool is no int)."""
    for name, kind in fields.items():
        value = item.get(name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise FetchError(f"{what} has no {kind.__name__} {name!r}: {str(item)[:120]}")
    return item


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def next_link(header: str | None) -> str | None:
    """The ``rel="next"`` URL of an RFC 8288 ``Link`` header (GitHub's and GitLab's paging)."""
    for part in (header or "").split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", "") and url.strip().startswith("<"):
            return url.strip()[1:-1]
    return None


class Api:
    """One CI API: its base URL, the headers every request carries (auth among them), and the
    service's name for messages. ``hint`` maps an HTTP status to what the user should check."""

    def __init__(self, service: str, base_url: str, headers: Mapping[str, str], *,
                 hints: Mapping[int, str] | None = None, timeout: float = TIMEOUT_S):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.hints = dict(hints or {})
        self.timeout = timeout

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> str:
        url = path if "://" in path else self.base_url + path
        if params:
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        return url

    def _where(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def _open(self, url: str, accept: str | None = None):
        """GET ``url``, following redirects; the API's headers only while on its origin."""
        own = _origin(self.base_url)
        for _ in range(MAX_REDIRECTS + 1):
            headers = dict(self.headers) if _origin(url) == own else {}
            if accept:
                headers["Accept"] = accept
            request = urllib.request.Request(url, headers=headers, method="GET")
            try:
                return _OPENER.open(request, timeout=self.timeout)
            except urllib.error.HTTPError as exc:
                location = exc.headers.get("Location") if exc.code in (301, 302, 303, 307, 308) else None
                if location:
                    exc.close()
                    url = urllib.parse.urljoin(url, location)
                    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
                        raise FetchError(f"{self.service} API redirected GET {self._where(request.full_url)} "
                                         f"to a non-http URL") from None
                    continue
                raise self._http_error(exc, request.full_url) from None
            except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as exc:
                reason = getattr(exc, "reason", exc)
                raise FetchError(f"cannot reach the {self.service} API at {_origin(url)[1]}: {reason}") from None
        raise FetchError(f"{self.service} API: more than {MAX_REDIRECTS} redirects for GET {self._where(url)}")

    def _http_error(self, exc: urllib.error.HTTPError, url: str) -> FetchError:
        headers = exc.headers
        try:
            body = json.loads(exc.read(4096) or b"null")
            message = body.get("message") if isinstance(body, dict) else None
        except (ValueError, OSError):
            message = None
        finally:
            exc.close()
        where = f"GET {self._where(url)}"
        limited = exc.code == 429 or (exc.code == 403 and (headers.get("X-RateLimit-Remaining") == "0"
                                                           or headers.get("Retry-After")))
        if limited:
            when = ""
            reset, retry = headers.get("X-RateLimit-Reset"), headers.get("Retry-After")
            if reset and reset.isdigit():
                when = " until " + time.strftime("%H:%M:%S UTC", time.gmtime(int(reset)))
            elif retry and retry.isdigit():
                when = f" for {retry} s"
            return FetchError(f"{self.service} API rate limit reached{when} ({exc.code} on {where}); try again later",
                              exc.code)
        said = f": {' '.join(str(message).split())[:200]}" if message else ""
        hint = self.hints.get(exc.code)
        return FetchError(f"{self.service} API: {exc.code} {exc.reason} on {where}{said}" + (f" ({hint})" if hint else ""),
                          exc.code)

    def json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        doc, _ = self._json_page(self.url(path, params))
        return doc

    def _json_page(self, url: str) -> tuple[Any, Any]:
        with self._open(url, accept=self.headers.get("Accept", "application/json")) as response:
            raw = response.read()
            headers = response.headers
        try:
            return json.loads(raw), headers
        except ValueError:
            raise FetchError(f"{self.service} API answered GET {self._where(url)} with something that is not JSON") from None

    def pages(self, path: str, key: str | None = None, *, per_page: int = 100) -> Iterator[dict[str, Any]]:
        """Every item of a paged list: the ``Link: rel="next"`` URL while there is one; without a
        Link header, the next page number while a page is full (what Megatron's script does)."""
        url: str | None = self.url(path, {"per_page": per_page, "page": 1})
        page = 1
        while url is not None:
            if page > MAX_PAGES:
                raise FetchError(f"{self.service} API: more than {MAX_PAGES} pages for GET {self._where(path)}")
            doc, headers = self._json_page(url)
            items = doc.get(key) if key is not None and isinstance(doc, dict) else doc
            if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
                want = f"an object with a list {key!r}" if key else "a list"
                raise FetchError(f"{self.service} API answered GET {self._where(url)} with no {want} of objects")
            yield from items
            page += 1
            link = headers.get("Link")
            if link is not None:
                url = next_link(link)
            else:
                url = self.url(path, {"per_page": per_page, "page": page}) if len(items) == per_page else None

    def download(self, path: str, target: Path) -> None:
        """Stream a file (an artifact archive) to ``target``."""
        with self._open(self.url(path)) as response, open(target, "wb") as fh:
            try:
                while chunk := response.read(CHUNK):
                    fh.write(chunk)
            except (OSError, socket.timeout) as exc:
                raise FetchError(f"{self.service} API: download of {self._where(path)} broke off: {exc}") from None
