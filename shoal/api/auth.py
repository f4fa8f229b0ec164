"""Who may do what: bearer tokens with two roles, checked before a request's
body is read.

A server started with tokens answers only requests that carry one:

    Authorization: Bearer <token>        (or `ApiKey <token>`, as Elasticsearch clients send)

* a **write** token may do everything;
* a **read** token may do what changes nothing: every GET and HEAD, and the
  POSTs that only read (`READ_POSTS`: queries, scans and counts);
* no token, or one the server does not know: 401 `unauthorized` with
  `WWW-Authenticate: Bearer`; a read token on a route that writes: 403
  `forbidden`. Both are answered before the body is read, so a client
  without the right token cannot make the server store, or even buffer, a
  byte of what it sends (the connection is closed, not drained).

Which role a route needs is decided from its method and path alone, here,
in one place, and fails closed: a POST, PUT, PATCH or DELETE that is not
listed in `READ_POSTS` needs the write token, so a new route that changes
the store is guarded even if nobody thought of it here. `OPEN_PATHS` need no
token: /healthz (load balancers and orchestrators probe it) and the API's
description and docs, which show how to call the API, not what it holds.

Tokens are compared in constant time (`hmac.compare_digest` of SHA-256
digests, against every configured token, with no early exit), so the time an
answer takes says nothing about how much of a guess was right.

With no tokens configured the server lets everyone write: that is meant for
a server on 127.0.0.1 (the default), and `serve()` warns loudly when it binds
anywhere else without tokens. Tokens travel in clear text over plain HTTP:
off the machine, serve over TLS (`--ssl-certfile`/`--ssl-keyfile`) or behind
a TLS-terminating proxy (README, "Access").
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InvalidArgument

log = logging.getLogger("shoal.api")


class Role(enum.IntEnum):
    """What a token may do; a higher role may do all a lower one may."""
    NONE = 0
    READ = 1
    WRITE = 2


# POST routes that change nothing. Every other POST, PUT, PATCH and DELETE
# needs the write token (fail closed: a route left out of this set is
# guarded, not opened).
READ_POSTS = frozenset({"/query", "/scan", "/count", "/group_count"})
# Paths anyone may fetch, token or not (prefixes end in "/").
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/redoc", "/docs/oauth2-redirect"})
OPEN_PREFIXES = ("/docs/", "/redoc/")
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Shorter tokens are accepted with a warning: a token is a password that a
# client sends on every request, and guessing must stay out of reach.
MIN_TOKEN_CHARS = 16
_SCHEMES = (b"bearer", b"apikey")


def required_role(method: str, path: str) -> Role:
    """The role a request needs (NONE: open to all)."""
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return Role.NONE
    if method in _READ_METHODS or (method == "POST" and path in READ_POSTS):
        return Role.READ
    return Role.WRITE


def check_token(token: str, what: str = "token") -> str:
    """A token as configured: printable ASCII without spaces, as an HTTP
    header can carry it (InvalidArgument otherwise)."""
    if not isinstance(token, str) or not token:
        raise InvalidArgument(f"an empty {what} is not allowed")
    if not all(33 <= ord(c) <= 126 for c in token):
        raise InvalidArgument(f"a {what} must be printable ASCII without spaces (it travels in an HTTP header)")
    return token


def _digest(token: bytes) -> bytes:
    return hashlib.sha256(token).digest()


@dataclass(frozen=True)
class Tokens:
    """The tokens a server accepts. No write token: no authentication at all
    (every request may write); read tokens need a write token beside them."""
    write: tuple[str, ...] = ()
    read: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for t in self.write:
            check_token(t, "write token")
        for t in self.read:
            check_token(t, "read token")
        if self.read and not self.write:
            raise InvalidArgument("read tokens need a write token too (--token): without one nobody could "
                                  "register PSFs or ingest")
        both = set(self.write) & set(self.read)
        if both:
            raise InvalidArgument("a token cannot be both a write token and a read token")

    @classmethod
    def of(cls, write: Iterable[str] = (), read: Iterable[str] = ()) -> "Tokens":
        return cls(tuple(dict.fromkeys(write)), tuple(dict.fromkeys(read)))

    @property
    def enabled(self) -> bool:
        return bool(self.write)

    def short(self) -> list[str]:
        """Which configured tokens are shorter than MIN_TOKEN_CHARS (by role)."""
        return ([f"a write token of {len(t)} characters" for t in self.write if len(t) < MIN_TOKEN_CHARS]
                + [f"a read token of {len(t)} characters" for t in self.read if len(t) < MIN_TOKEN_CHARS])


class _Digests:
    """The SHA-256 digests of a Tokens, computed once per app."""

    def __init__(self, tokens: Tokens):
        self.write = [_digest(t.encode()) for t in tokens.write]
        self.read = [_digest(t.encode()) for t in tokens.read]

    def role_of(self, presented: bytes) -> Role:
        # Compare against every token, whatever matched before: the time
        # taken depends on how many tokens there are, never on the guess.
        got = _digest(presented)
        write = read = False
        for d in self.write:
            write |= hmac.compare_digest(got, d)
        for d in self.read:
            read |= hmac.compare_digest(got, d)
        return Role.WRITE if write else Role.READ if read else Role.NONE


def presented_token(scope: Scope) -> bytes | None:
    """The credential of `Authorization: Bearer <t>` (or `ApiKey <t>`), else None."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credential = value.strip().partition(b" ")
            if scheme.lower() in _SCHEMES and credential.strip():
                return credential.strip()
            return None
    return None


class Authenticate:
    """ASGI middleware: answers 401/403 before the app (and the body) is
    reached; lets through what the request's token allows."""

    def __init__(self, app: ASGIApp, tokens: Tokens):
        self.app = app
        self.tokens = tokens
        self._digests = _Digests(tokens)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens.enabled:
            await self.app(scope, receive, send)
            return
        needed = required_role(scope["method"], scope["path"])
        if needed is Role.NONE:
            await self.app(scope, receive, send)
            return
        presented = presented_token(scope)
        role = self._digests.role_of(presented) if presented is not None else Role.NONE
        if role >= needed:
            await self.app(scope, receive, send)
            return
        route = f"{scope['method']} {scope['path']}"
        if role is Role.NONE:
            why = ("no token was sent" if presented is None else "the token sent is not one this server accepts")
            log.info("401 %s from %s: %s", route, _client(scope), why)
            await _refuse(send, 401, "unauthorized",
                          f"{why}; this server needs `Authorization: Bearer <token>` (shoal.Client(token=...), "
                          f"the CLI's --token or $SHOAL_TOKEN)",
                          [(b"www-authenticate", b'Bearer realm="shoal"')])
        else:
            log.info("403 %s from %s: read token", route, _client(scope))
            await _refuse(send, 403, "forbidden",
                          f"{route} changes the store and needs a write token; the token sent is a read token",
                          [(b"www-authenticate", b'Bearer realm="shoal", error="insufficient_scope"')])


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _refuse(send: Send, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]]) -> None:
    import orjson
    payload = orjson.dumps({"error": code, "detail": detail})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *headers]})
    await send({"type": "http.response.body", "body": payload})
