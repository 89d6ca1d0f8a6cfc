"""SERVICEQ_API_TOKEN: one shared secret for the API, the batch pages and the dashboard.

API clients send ``Authorization: Bearer <token>``.  Browsers cannot attach a
header to a link they follow, so the pages (``/ui``, ``/rq``) also take HTTP
Basic with the token as the password: the browser asks once and sends it on.
Comparison is ``hmac.compare_digest``, so response time tells nothing about
how much of a guess was right.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

REALM = "rq-serviceq"
bearer_scheme = HTTPBearer(auto_error=False, description="SERVICEQ_API_TOKEN, when the server has one")

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


def _check(request: Request) -> TokenCheck:
    check: TokenCheck = request.app.state.token_check
    return check


async def require_api_token(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
) -> None:
    """Dependency of every API route (reads too: reports carry task data)."""
    if not _check(request).allows(request.headers.get("authorization")):
        raise HTTPException(
            401,
            "missing or wrong token: send 'Authorization: Bearer <SERVICEQ_API_TOKEN>'",
            headers={"WWW-Authenticate": f'Bearer realm="{REALM}"'},
        )


async def require_page_token(request: Request) -> None:
    """Dependency of the batch pages: Bearer, or Basic with the token as password (what a browser can send)."""
    if not _check(request).allows(request.headers.get("authorization"), basic=True):
        raise HTTPException(
            401,
            "login required: the password is SERVICEQ_API_TOKEN (any user name)",
            headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'},
        )


class TokenGate:
    """ASGI wrapper for the mounted dashboard, which has no login of its own."""

    def __init__(self, app: ASGIApp, check: TokenCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.check.required:
            headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
            if not self.check.allows(headers.get("authorization"), basic=True):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send) -> None:
    body = b'{"detail":"login required: the password is SERVICEQ_API_TOKEN (any user name)"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
