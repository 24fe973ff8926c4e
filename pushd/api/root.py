# -*- test-case-name: tests.test_api -*-
"""
The API's resource tree, built in one place: ``/api/...`` at the root of
the ``--api`` listener.  Every path but ``/api/health`` needs the bearer
token; the token is checked before the path is resolved, so an unknown path
without it is a 401 as well.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from pushd import __version__
from pushd.api._context import Commands, Context, Users
from pushd.api._errors import NotFound, Unauthorized
from pushd.api._resource import ApiResource, Refusal, api_handler, authorized, send_error
from pushd.api.commands import Commands as CommandsResource
from pushd.api.devices import Devices
from pushd.api.photos import Photos
from pushd.api.records import Attendance, AttendanceCsv, Records
from pushd.api.sinks import Sinks
from pushd.api.users import Users as UsersResource
from pushd.metrics import CONTENT_TYPE_LATEST

__all__ = ["Health", "build_api"]


class Health(ApiResource):
    """``GET /api/health``: no token needed; for load balancers and monitors."""

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        return {"status": "ok", "store": self._context.store.kind, "version": __version__}


class Crypto(ApiResource):
    """``GET /api/crypto``: the ZKX1 server key's fingerprint (to pin) and the transports."""

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        sessions = self._context.app.sessions
        return {
            "server_key_fingerprint": await sessions.fingerprint(),
            "transports": sessions.names(),
        }


class MetricsResource(Resource):
    """``GET /metrics``: Prometheus text format, behind the token like the API."""

    isLeaf = True

    def __init__(self, token: str, metrics: Any) -> None:
        super().__init__()
        self._token = token
        self._metrics = metrics

    def render_GET(self, request: Request) -> object:
        if not authorized(request, self._token):
            send_error(request, Unauthorized())
            return NOT_DONE_YET
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return bytes(self._metrics.exposition())


class _Guarded(Resource):
    """``/api``: checks the token, then hands the request to the endpoint."""

    def __init__(self, token: str, health: Resource, endpoints: Dict[bytes, Resource]) -> None:
        super().__init__()
        self._token = token
        self._health = health
        self._endpoints = endpoints

    def getChildWithDefault(self, path: bytes, request: Request) -> Resource:
        if path == b"health":
            return self._health
        if not authorized(request, self._token):
            return Refusal(Unauthorized())
        return self._endpoints.get(path) or Refusal(NotFound())

    def render(self, request: Request) -> object:
        refusal = NotFound() if authorized(request, self._token) else Unauthorized()
        return Refusal(refusal).render(request)


class _Root(Resource):
    def getChild(self, path: bytes, request: Request) -> Resource:
        return Refusal(NotFound())

    def render(self, request: Request) -> object:
        return Refusal(NotFound()).render(request)


def build_api(
    app: Any,
    token: str,
    commands: Commands,
    users: Users,
    clock: IReactorTime,
    extensions: Optional[Mapping[bytes, IResource]] = None,
) -> IResource:
    """
    The resource to serve at the root of the API listener.

    :param app: the :class:`pushd.service.Application`.
    :param token: the bearer token every request but ``/api/health`` must carry.
    :param commands: the :class:`pushd.commands.CommandService`.
    :param users: the :class:`pushd.users.UserService`.
    :param clock: the reactor: its time decides ``online``, its thread pool
        reads photo files.
    :raises ValueError: an empty token.
    """
    if not token:
        raise ValueError("the API token must not be empty")
    context = Context(app, commands, users, clock)
    endpoints: Dict[bytes, Resource] = {
        b"devices": Devices(context),
        b"commands": CommandsResource(context),
        b"attendance": Attendance(context),
        b"attendance.csv": AttendanceCsv(context),
        b"operations": Records.operations(context),
        b"errors": Records.errors(context),
        b"users": UsersResource(context),
        b"photos": Photos(context),
        b"crypto": Crypto(context),
        b"sinks": Sinks(context),
    }
    if extensions:
        ext = Resource()
        for name, child in extensions.items():
            ext.putChild(name, child)
        endpoints[b"ext"] = ext
    root = _Root()
    root.putChild(b"api", _Guarded(token, Health(context), endpoints))
    root.putChild(b"metrics", MetricsResource(token, app.metrics))
    return root
