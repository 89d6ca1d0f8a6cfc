"""SERVICEQ_API_TOKEN: one shared secret for the API, the batch pages and the dashboard.

API clients send ``Authorization: Bearer <token>``.  Browsers cannot attach a
header to a link they follow, so the pages (``/ui``, ``/rq``) also take HTTP
Basic with the token as the password: the browser asks once and sends it on.
Comparison is ``hmac.compare_digest``, so response time tells nothing about
how much of a guess was right.

The check is one ASGI middleware in front of everything (the mounted
dashboard included) rather than a FastAPI dependency per route: a
dependency costs a resolution on every request, a third of a single-task
push's CPU when measured.  Only health, the OpenAPI schema and ``/docs`` (with
the Swagger UI files it loads, ``/docs/assets/``) are open.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pydantic import SecretStr

from rq_serviceq.http.codec import is_json_media

REALM = "rq-serviceq"
OPEN_PATHS = frozenset({"/healthz", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/assets/",)  # what /docs loads (Swagger UI's files): open as /docs is
PAGE_PREFIXES = ("/ui", "/rq")  # what a browser opens: Basic login allowed and asked for

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TokenCheck:
    def __init__(self, token: SecretStr | None) -> None:
        self._token = token.get_secret_value().encode() if token else None

    @property
    def required(self) -> bool:
        return self._token is not None

    def allows(self, authorization: str | None, basic: bool = False) -> bool:
        if self._token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer":
            return hmac.compare_digest(given.strip().encode(), self._token)
        if basic and scheme.lower() == "basic":
            return hmac.compare_digest(_basic_password(given.strip()), self._token)
        return False


def _basic_password(encoded: str) -> bytes:
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return b""
    return decoded.partition(b":")[2]


class TokenMiddleware:
    """Refuses (401) every HTTP request without the token, except health and the API docs."""

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        page = scope["path"].startswith(PAGE_PREFIXES)
        authorization = next((v.decode("latin1") for k, v in scope["headers"] if k.lower() == b"authorization"), None)
        if self.check.allows(authorization, basic=page):
            await self.app(scope, receive, send)
            return
        if page:
            await _refuse(send, "login required: the password is SERVICEQ_API_TOKEN (any user name)", "Basic")
        else:
            await refuse_api(send)


def is_open(path: str) -> bool:
    """Whether ``path`` is served without the token: health, the schema, and ``/docs`` with its assets.

    A path with a ``..`` segment is never open, so ``/docs/assets/../serviceqs`` cannot reach past
    the assets whatever a router downstream makes of it.
    """
    if path in OPEN_PATHS:
        return True
    return path.startswith(OPEN_PREFIXES) and ".." not in path.split("/")


async def refuse_api(send: Send) -> None:
    """The 401 an API request without the token gets (the middleware's, and the fast path's)."""
    await _refuse(send, "missing or wrong token: send 'Authorization: Bearer <SERVICEQ_API_TOKEN>'", "Bearer")


async def _refuse(send: Send, detail: str, scheme: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    challenge = f'Basic realm="{REALM}", charset="UTF-8"' if scheme == "Basic" else f'Bearer realm="{REALM}"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": body})


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TRUSTED_FETCH_SITES = frozenset({b"same-origin", b"none"})  # "none": the user typed it, or a bookmark
UI_PREFIX = "/ui"  # the pages and their controls (/ui/api): state-changing requests there must be JSON


def cross_site(scope: Scope) -> str | None:
    """Why a state-changing request looks like a browser's cross-site one, or None when it does not.

    A cross-site HTML form POST needs no preflight and carries whatever
    credentials the browser holds (Basic, cookies), token or no token.  What
    tells it apart is what browsers add and pages cannot forge: ``Sec-Fetch-Site``
    (anything but ``same-origin`` or ``none`` is refused; ``same-site`` too,
    since another port of the same host is "same-site") and, where a browser
    sends no Fetch metadata, ``Origin`` (refused unless it names this server's
    ``Host``).  A request with neither (curl, scripts, SDKs) is no browser's
    cross-site request, whatever its Content-Type, so the seed's curl works as before.

    Under ``/ui`` (the pages' controls, which take the browser's stored Basic login)
    a state-changing request must also be JSON: a plain HTML form can only send
    urlencoded, multipart or text/plain bodies, and a cross-site ``fetch`` with a
    JSON body needs a CORS preflight this server never grants.  That covers an old
    browser that sends neither Fetch metadata nor ``Origin`` on a form POST.
    """
    if scope["method"] in SAFE_METHODS:
        return None
    fetch_site = origin = host = content_type = None
    for key, value in scope["headers"]:
        if key == b"sec-fetch-site":
            fetch_site = value.strip().lower()
        elif key == b"origin":
            origin = value.strip().lower()
        elif key == b"host":
            host = value.strip().lower()
        elif key == b"content-type":
            content_type = value.decode("latin-1")
    if _is_page_path(scope["path"]) and not is_json_media(content_type):
        return "a page's state-changing request must be JSON (Content-Type: application/json), as no HTML form's is"
    if fetch_site is not None:
        return None if fetch_site in TRUSTED_FETCH_SITES else f"Sec-Fetch-Site is {fetch_site.decode('latin-1')!r}"
    if origin is not None and origin.partition(b"://")[2] != host:
        return f"Origin {origin.decode('latin-1')!r} is not this server"
    return None


def _is_page_path(path: str) -> bool:
    return path == UI_PREFIX or path.startswith(UI_PREFIX + "/")


async def refuse_cross_site(send: Send, why: str) -> None:
    """403 for a browser's cross-site state-changing request (``cross_site``)."""
    body = json.dumps(
        {
            "detail": f"cross-site request refused: {why}; state-changing routes answer same-origin "
            "pages and non-browser clients only"
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 403, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def add_bearer_to_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Tell OpenAPI clients (and the docs' Authorize button) about the token, without a per-route dependency."""
    schema.setdefault("components", {})["securitySchemes"] = {
        "HTTPBearer": {"type": "http", "scheme": "bearer", "description": "SERVICEQ_API_TOKEN, when the server has one"}
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            operation["security"] = [] if path in OPEN_PATHS else [{"HTTPBearer": []}]
    return schema
