"""
An example pushd plugin: body temperature readings that terminals upload as
``table=TEMPERATURE``, and an API resource listing them.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from twisted.internet.defer import Deferred
from twisted.plugin import IPlugin
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from pushd.errors import ProtocolError
from pushd.interfaces import IPushdPlugin, IResourcePlugin, ITableHandlerPlugin


def parse_readings(body: bytes) -> List[Sequence[Tuple[str, str]]]:
    """``PIN=..<TAB>Temp=..<TAB>Time=..`` lines into lists of ``(key, value)`` pairs."""
    readings = []
    for line in body.splitlines():
        if not line.strip():
            continue
        pairs = []
        for field in line.split(b"\t"):
            key, eq, value = field.partition(b"=")
            if not eq or not key:
                raise ProtocolError("TEMPERATURE lines are key=value fields joined by TAB")
            pairs.append((key.decode("ascii", "replace"), value.decode("utf-8", "replace")))
        readings.append(pairs)
    return readings


class Readings(Resource):
    """``GET /api/ext/example/temperatures[?sn=SN]``: the stored readings as JSON."""

    isLeaf = True

    def __init__(self, facade: Any) -> None:
        super().__init__()
        self._facade = facade

    def render_GET(self, request: Request) -> Any:
        sn = request.args.get(b"sn", [b""])[0].decode("ascii", "replace") or None
        d: Deferred[Any] = self._facade.records("temperature", sn=sn, limit=1000)

        def send(page: Any) -> None:
            body = json.dumps({"items": page.items, "next": page.next}).encode()
            request.setHeader(b"content-type", b"application/json")
            request.write(body)
            request.finish()

        def failed(failure: Any) -> None:
            self._facade.log.failure("Listing temperatures", failure)
            request.setResponseCode(503)
            request.write(b'{"error": "store unavailable"}')
            request.finish()

        d.addCallbacks(send, failed)
        return NOT_DONE_YET


@implementer(IPlugin, IPushdPlugin, ITableHandlerPlugin, IResourcePlugin)
class Temperatures:
    name = "example"
    description = "temperature readings (table TEMPERATURE) and /api/ext/example/temperatures"
    tables = ("TEMPERATURE",)

    def handle(
        self, facade: Any, sn: str, table: str, params: Mapping[str, str], body: bytes
    ) -> Deferred[int]:
        readings = parse_readings(body)
        stored: Deferred[Any] = facade.store_records(sn, "temperature", readings)
        return stored.addCallback(lambda _: len(readings))

    def device_children(self, facade: Any) -> Dict[bytes, Resource]:
        return {}

    def api_children(self, facade: Any) -> Dict[bytes, Resource]:
        return {b"temperatures": Readings(facade)}


example = Temperatures()
