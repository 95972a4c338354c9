"""Pure ASGI middleware guarding every request before routing.

Order (outermost first): Host allow-list (403) -> Origin refusal (403) -> bearer token
(401) -> streamed body cap (413). Because these run before the router, an unknown
path, the OpenAPI document and health all get exactly the same treatment.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, message: str, extra_headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if extra_headers:
        headers.extend(extra_headers)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> list[bytes]:
    return [v for k, v in scope.get("headers", []) if k.lower() == name]


class GuardMiddleware:
    """Host allow-list, Origin refusal and token check for every HTTP request.

    host_allow_list: exact ``Host`` values accepted (lower-case), or None to skip the check.
    allowed_origins: ``Origin`` values accepted; a request with any other Origin is refused.
    token: the launch token, compared in constant time.
    """

    def __init__(self, app: ASGIApp, *, token: str, host_allow_list: frozenset[str] | None, allowed_origins: tuple[str, ...]):
        self.app = app
        self._token = token.encode()
        self._hosts = host_allow_list
        self._origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets are not served at all
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        hosts = _header(scope, b"host")
        if self._hosts is not None:
            if len(hosts) != 1 or hosts[0].decode("latin-1").lower() not in self._hosts:
                await send_error(send, 403, "Host header not allowed; connect to 127.0.0.1 or localhost on the engine's port")
                return
        origins = _header(scope, b"origin")
        if origins and (len(origins) != 1 or origins[0].decode("latin-1") not in self._origins):
            await send_error(send, 403, "requests from web pages (Origin header) are refused; use the add-on or a local client")
            return
        if not self._token_ok(scope):
            await send_error(
                send,
                401,
                "missing or wrong token; send 'Authorization: Bearer <token>' with the token from the discovery file",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)

    def _token_ok(self, scope: Scope) -> bool:
        values = _header(scope, b"authorization")
        if len(values) != 1:
            return False
        scheme, _, value = values[0].partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        return hmac.compare_digest(value.strip(), self._token)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse request bodies over ``max_bytes`` with 413, counting streamed bytes.

    A ``Content-Length`` over the cap is refused before reading anything; otherwise the
    bytes are counted as the app pulls them, and the request is cut off as soon as the
    count passes the cap, so nothing beyond the cap is ever buffered.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return f"request body is larger than the engine's limit of {self.max_bytes} bytes; send a smaller mesh or raise --max-body-mb"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths = _header(scope, b"content-length")
        if lengths:
            try:
                declared = int(lengths[0])
            except ValueError:
                await send_error(send, 400, "malformed Content-Length header")
                return
            if declared > self.max_bytes:
                await send_error(send, 413, self._message(), [(b"connection", b"close")])
                return
        state = {"count": 0, "overflow": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["count"] += len(message.get("body", b""))
                if state["count"] > self.max_bytes:
                    state["overflow"] = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            if state["overflow"]:
                return  # the app's own error response is replaced by the 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not state["overflow"]:
                raise
        if state["overflow"] and not state["started"]:
            await send_error(send, 413, self._message(), [(b"connection", b"close")])
