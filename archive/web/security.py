"""The review server's guard: read-only methods, the access token, Host checks, headers.

One pure ASGI middleware in front of every route (static files and JSON included):

- only GET and HEAD exist; anything else is 405, so the app stays read-only;
- with a token, every request must carry it: ``Authorization: Bearer T``,
  ``X-Daedalus-Token: T``, or the ``daedalus_token`` cookie, which a one-time
  ``?token=T`` link sets (then redirects to the same URL without the token);
- without a token (loopback only), the Host header must name a loopback address, so a
  web page elsewhere cannot reach the server through DNS rebinding;
- every response gets a strict Content-Security-Policy (scripts and styles from this
  origin only, no inline script), ``nosniff``, no framing and no referrer.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "daedalus_token"
HEADER = "x-daedalus-token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """The middleware; ``token=None`` means loopback-only mode with Host checks."""

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: set[str]) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = {h.strip("[]").lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # no websockets: nothing here needs one
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if scope["method"] not in ("GET", "HEAD"):
            await _plain(
                send,
                405,
                "405 Method Not Allowed: the review server is read-only. Fix: use GET.",
                [(b"allow", b"GET, HEAD")],
            )
            return
        if self.token is None:
            host = _host_name(headers.get("host", ""))
            if host not in self.allowed_hosts:
                await _plain(
                    send,
                    400,
                    f"400 Bad Request: unexpected Host {host!r}; this server only answers on "
                    "loopback. Fix: open http://127.0.0.1:PORT/, or restart `daedalus serve` "
                    "with --token to serve other hosts.",
                )
                return
        else:
            query = scope.get("query_string", b"").decode("latin-1")
            pairs = parse_qsl(query, keep_blank_values=True)
            given = [v for k, v in pairs if k == "token"]
            if given and self._valid(given[-1]):
                await self._redirect_with_cookie(
                    scope, send, [(k, v) for k, v in pairs if k != "token"]
                )
                return
            if not self._valid(_presented(headers)):
                await _plain(
                    send,
                    401,
                    "401 Unauthorized: this Daedalus review server needs its access token. "
                    "Fix: open the link `daedalus serve` printed (it ends in ?token=...), or "
                    "send the header 'Authorization: Bearer <token>'.",
                    [(b"www-authenticate", b'Bearer realm="daedalus"')],
                )
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _valid(self, value: str | None) -> bool:
        return (
            self.token is not None
            and value is not None
            and hmac.compare_digest(value.encode("utf-8", "replace"), self.token)
        )

    async def _redirect_with_cookie(
        self, scope: Scope, send: Send, rest: list[tuple[str, str]]
    ) -> None:
        assert self.token is not None
        target = (
            scope.get("root_path", "") + scope["path"] + ("?" + urlencode(rest) if rest else "")
        )
        cookie = f"{COOKIE}={self.token.decode()}; Path=/; HttpOnly; SameSite=Strict".encode()
        await _plain(
            send,
            303,
            "303 See Other",
            [(b"location", target.encode()), (b"set-cookie", cookie)],
        )


def _presented(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if HEADER in headers:
        return headers[HEADER].strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except CookieError:  # a malformed Cookie header is simply no token
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
