# -*- test-case-name: tests.test_api -*-
"""
What every API resource shares: JSON replies and errors, the one decorator
for asynchronous handlers, and the refusals (401, 404, 405) as JSON.

A handler is an ``async def render_X(self, request)`` returning a JSON-ready
value (sent with status 200), a :class:`Reply` (another status, headers, or
bytes of another content type), or :data:`STREAMED` when it wrote and
finished the response itself.  :class:`~pushd.errors.PushdError` becomes its
status with ``{"error": reason}``; anything else is logged and answered with
a 500, never a traceback.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from pushd.api._errors import BadRequest, MethodNotAllowed, NotFound
from pushd.errors import PushdError
from pushd.web._render import write_reply

__all__ = [
    "JSON",
    "STREAMED",
    "ApiResource",
    "Refusal",
    "Reply",
    "api_handler",
    "authorized",
    "dump_json",
    "read_json",
    "send_error",
]

JSON = b"application/json; charset=utf-8"

_log = Logger(namespace="pushd.api")


@dataclass(frozen=True)
class Reply:
    """A reply other than "200 with this JSON": ``body`` is JSON-ready, or bytes sent as is."""

    body: Any
    status: int = 200
    content_type: bytes = JSON
    headers: Mapping[bytes, bytes] = field(default_factory=dict)


class _Streamed:
    def __repr__(self) -> str:
        return "STREAMED"


#: Returned by a handler that wrote and finished the response itself.
STREAMED: Any = _Streamed()


def dump_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, newline-terminated (friendly to ``curl``)."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def read_json(request: Request) -> Dict[str, Any]:
    """
    The request body as a JSON object.

    :raises BadRequest: an empty body, invalid JSON, or not an object.
    """
    content = request.content
    raw = b""
    if content is not None:
        content.seek(0)
        raw = content.read()
    if not raw.strip():
        raise BadRequest("a JSON object body is required")
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"invalid JSON body: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest("the body must be a JSON object")
    return value


def authorized(request: Request, token: str) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (compared in constant time)."""
    header = request.getHeader(b"authorization") or b""
    scheme, _, given = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token.encode("utf-8"))


def _describe(request: Request) -> str:
    method = request.method.decode("ascii", "replace")
    return f"{method} {request.uri.decode('utf-8', 'replace')}"


def _send(request: Request, reply: Reply) -> None:
    if request.finished or getattr(request, "_disconnected", False):
        return
    for name, value in reply.headers.items():
        request.setHeader(name, value)
    body = reply.body if isinstance(reply.body, bytes) else dump_json(reply.body)
    write_reply(request, reply.status, body, reply.content_type)


def send_error(request: Request, error: PushdError) -> None:
    """Answer ``request`` with ``{"error": reason}`` and the error's status."""
    headers: Dict[bytes, bytes] = {}
    if error.status == 401:
        headers[b"www-authenticate"] = b'Bearer realm="pushd"'
    _send(request, Reply({"error": error.reason}, error.status, JSON, headers))


Handler = Callable[[Any, Request], Awaitable[Any]]


def api_handler(handler: Handler) -> Callable[..., Any]:
    """Wrap ``async def render_X(self, request)`` into a twisted.web render method."""

    @wraps(handler)
    def render(self: Any, request: Request) -> object:
        d: Deferred[Any] = Deferred.fromCoroutine(handler(self, request))  # type: ignore[arg-type]

        def succeeded(result: Any) -> None:
            if result is STREAMED:
                return
            _send(request, result if isinstance(result, Reply) else Reply(result))

        def failed(failure: Failure) -> None:
            if failure.check(CancelledError):
                return
            error = failure.value
            if request.startedWriting:
                # The status line is gone: all we can do is not to pretend
                # the body is complete.
                _log.failure(
                    "Failed while streaming {request}", failure, request=_describe(request)
                )
                request.loseConnection()
                return
            if isinstance(error, PushdError):
                if error.status >= 500:
                    _log.warn(
                        "{request}: {status} {reason}",
                        request=_describe(request),
                        status=error.status,
                        reason=error.reason,
                    )
                send_error(request, error)
                return
            _log.failure("Unexpected error serving {request}", failure, request=_describe(request))
            send_error(request, PushdError("internal server error"))

        d.addCallbacks(succeeded, failed)
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    return render


def _allowed(resource: Resource) -> List[str]:
    methods = {n[7:] for n in dir(resource) if n.startswith("render_") and n != "render_HEAD"}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


class ApiResource(Resource):
    """
    Base of every API endpoint: a leaf, unless it sets ``isLeaf = False``
    and serves children through :meth:`child`.

    Unknown methods get a JSON 405 with ``Allow``; a path continuing past a
    leaf gets a JSON 404.
    """

    isLeaf = True

    def render(self, request: Request) -> object:
        if self.isLeaf and any(request.postpath or ()):
            send_error(request, NotFound())
            return NOT_DONE_YET
        method = request.method.decode("ascii", "replace")
        renderer = getattr(self, "render_" + ("GET" if method == "HEAD" else method), None)
        if renderer is None:
            allowed = _allowed(self)
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            send_error(request, MethodNotAllowed(f"method {method} not allowed here"))
            return NOT_DONE_YET
        return renderer(request)

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":  # a trailing slash: the collection itself
            return self
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return Refusal(NotFound())
        found = self.child(name)
        return found if found is not None else Refusal(NotFound())

    def child(self, name: str) -> Optional[Resource]:
        """The resource at ``<this path>/<name>``, or ``None`` (404)."""
        return None


class Refusal(Resource):
    """A leaf answering every request with one error: 401, 404..."""

    isLeaf = True

    def __init__(self, error: PushdError) -> None:
        super().__init__()
        self._error = error

    def render(self, request: Request) -> object:
        send_error(request, self._error)
        return NOT_DONE_YET
