# -*- test-case-name: tests.test_web_iclock -*-
"""
The resource tree, built in one place.

``/iclock/<endpoint>``, with the aliases real devices use: a doubled prefix
(``/iclock/iclock/cdata``) and an ``.aspx`` suffix (``cdata.aspx``).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple

from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from pushd.files import FileArea
from pushd.web.iclock import (
    CData,
    DeviceCmd,
    DeviceServices,
    Exchange,
    FData,
    FileDownload,
    GetRequest,
    Ping,
    PushEndpoint,
    QueryData,
    RegistryEndpoint,
    RtData,
)

__all__ = ["SERVED_PATHS", "build_root"]


#: The paths pushd serves under ``/iclock/`` itself (and their ``.aspx`` aliases).
SERVED_PATHS = frozenset(
    name + suffix
    for name in (
        b"cdata",
        b"fdata",
        b"getrequest",
        b"devicecmd",
        b"ping",
        b"exchange",
        b"file",
        b"registry",
        b"push",
        b"rtdata",
        b"querydata",
    )
    for suffix in (b"", b".aspx")
) | {b"iclock"}


class NotFound(Resource):
    """A plain-text 404 for any path pushd does not serve."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain")
        return b"Not found"


class _Tree(Resource):
    """A folder of endpoints: unknown children and the folder itself are plain 404s."""

    def getChild(self, path: bytes, request: Request) -> Resource:
        return NotFound()

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


def build_root(
    services: DeviceServices,
    options: Sequence[Tuple[str, str]],
    files: FileArea,
    reactor: Any,
    extra: Optional[Mapping[bytes, IResource]] = None,
) -> IResource:
    """The whole device-facing tree, with the plugins' ``extra`` children of ``/iclock/``."""
    iclock = _Tree()
    endpoints = {
        b"cdata": CData(services, options),
        b"fdata": FData(services),
        b"getrequest": GetRequest(services),
        b"devicecmd": DeviceCmd(services),
        b"ping": Ping(services),
        b"exchange": Exchange(services),
        b"registry": RegistryEndpoint(services),
        b"push": PushEndpoint(services),
        b"rtdata": RtData(services),
        b"querydata": QueryData(services),
        b"file": FileDownload(services.registry, files, reactor),
    }
    for name, resource in endpoints.items():
        iclock.putChild(name, resource)
        iclock.putChild(name + b".aspx", resource)
    for path, child in (extra or {}).items():
        iclock.putChild(path, child)
    iclock.putChild(b"iclock", iclock)
    root = _Tree()
    root.putChild(b"iclock", iclock)
    return root
