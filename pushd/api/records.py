# -*- test-case-name: tests.test_api -*-
"""
What devices uploaded: attendance (as JSON pages and as a streamed CSV
export), the operation log, the error log.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

from pushd.api._context import Context, Zones
from pushd.api._params import Args, parse_limit, record_query, to_utc
from pushd.api._resource import STREAMED, ApiResource, api_handler

__all__ = [
    "CSV_COLUMNS",
    "Attendance",
    "AttendanceCsv",
    "Records",
    "attendance_json",
    "attendance_row",
]

#: The columns of ``/api/attendance.csv``, the header row.
CSV_COLUMNS = (
    "id",
    "sn",
    "pin",
    "time",
    "utc",
    "status",
    "verify",
    "workcode",
    "extra",
    "received",
)

#: Stored columns the API does not show: the raw line is for forensics.
_HIDDEN = ("raw",)

View = Callable[[Dict[str, Any], Zones], Awaitable[Dict[str, Any]]]


def attendance_json(item: Dict[str, Any], offset: Optional[int]) -> Dict[str, Any]:
    """A stored punch as the API shows it; ``offset`` is the device's UTC offset in minutes."""
    return {
        "id": item["id"],
        "sn": item["sn"],
        "pin": item["pin"],
        "time": item["time"],
        "utc": to_utc(item["time"], offset),
        "status": item["status"],
        "verify": item["verify"],
        "workcode": item["workcode"],
        "extra": list(item.get("extra") or ()),
        "received": item["received"],
    }


def attendance_row(punch: Dict[str, Any]) -> List[str]:
    """An :func:`attendance_json` object as a CSV row; ``extra`` fields joined by ``;``."""
    values = dict(punch, extra=";".join(punch["extra"]))
    return ["" if values[name] is None else str(values[name]) for name in CSV_COLUMNS]


async def _attendance(item: Dict[str, Any], zones: Zones) -> Dict[str, Any]:
    return attendance_json(item, await zones.offset(item["sn"]))


async def _with_utc(item: Dict[str, Any], zones: Zones) -> Dict[str, Any]:
    shown = {k: v for k, v in item.items() if k not in _HIDDEN}
    if "time" in shown:
        shown["utc"] = to_utc(shown["time"], await zones.offset(item["sn"]))
    return shown


async def _plain(item: Dict[str, Any], zones: Zones) -> Dict[str, Any]:
    return {k: v for k, v in item.items() if k not in _HIDDEN}


class Records(ApiResource):
    """A listing of one record kind: ``{"items": [...], "next": cursor}``."""

    def __init__(self, context: Context, kind: str, filters: Sequence[str], view: View) -> None:
        super().__init__()
        self._context = context
        self._kind = kind
        self._filters = tuple(filters)
        self._view = view

    @classmethod
    def operations(cls, context: Context) -> Records:
        """``GET /api/operations?sn=&since=&until=``."""
        return cls(context, "operations", ("sn", "since", "until"), _with_utc)

    @classmethod
    def errors(cls, context: Context) -> Records:
        """``GET /api/errors?sn=&since=&until=``."""
        return cls(context, "errors", ("sn", "since", "until"), _plain)

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        query = record_query(Args(request.args), self._filters)
        page = await self._context.query(self._kind, query)
        zones = self._context.zones()
        items = [await self._view(item, zones) for item in page.items]
        return {"items": items, "next": page.next}


class Attendance(Records):
    """``GET /api/attendance?sn=&pin=&since=&until=``: punches, oldest first."""

    def __init__(self, context: Context) -> None:
        super().__init__(context, "attendance", ("sn", "pin", "since", "until"), _attendance)


@implementer(IPushProducer)
class _Backpressure:
    """
    Registered with a request while a response is streamed: the transport
    pauses it when its buffer is full, and :meth:`ready` waits until it drains.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self._paused = False
        self._stopped = False
        self._waiting: List[Deferred[None]] = []
        request.registerProducer(self, True)
        # HTTPChannel does not tell a producer registered while it waits for
        # its transport: start paused then, and be resumed with the others
        if getattr(request.channel, "_waitingForTransport", False):
            self._paused = True

    def ready(self) -> Deferred[None]:
        """Fires when more may be written; fails with ``CancelledError`` if the client left."""
        if self._stopped:
            raise CancelledError("the client went away")
        if not self._paused:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            if self._stopped:
                d.errback(CancelledError("the client went away"))
            else:
                d.callback(None)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._release()

    def stopProducing(self) -> None:
        self._stopped = True
        self._release()

    def unregister(self) -> None:
        if self._request.channel is not None:
            self._request.unregisterProducer()


class AttendanceCsv(ApiResource):
    """
    ``GET /api/attendance.csv``: the punches of ``/api/attendance`` as CSV
    with a header row, streamed: the store is read ``page_size`` rows at a
    time and each page is written before the next is read, waiting whenever
    the client is slower than the store.  Every matching punch is exported
    (from ``cursor`` if given); ``limit``, if given, caps the rows.
    """

    def __init__(self, context: Context, page_size: int = 1000) -> None:
        super().__init__()
        self._context = context
        self._page_size = page_size

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        args = Args(request.args)
        remaining = parse_limit(args.get("limit"), maximum=None)
        query = record_query(Args({k: v for k, v in request.args.items() if k != b"limit"}))
        query = replace(query, limit=self._page_size)
        if remaining is not None:
            query = replace(query, limit=min(self._page_size, remaining))
        zones = self._context.zones()
        # the first page before anything is written: a bad cursor is still a 400
        page = await self._context.query("attendance", query)
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/csv; charset=utf-8")
        request.setHeader(b"content-disposition", b'attachment; filename="attendance.csv"')
        if request.method == b"HEAD":
            request.finish()
            return STREAMED
        flow = _Backpressure(request)
        try:
            request.write(_csv_lines([list(CSV_COLUMNS)]))
            while True:
                rows = [attendance_row(await _attendance(item, zones)) for item in page.items]
                request.write(_csv_lines(rows))
                if remaining is not None:
                    remaining -= len(rows)
                if page.next is None or remaining == 0:
                    break
                await flow.ready()
                size = self._page_size if remaining is None else min(self._page_size, remaining)
                page = await self._context.query(
                    "attendance", replace(query, cursor=page.next, limit=size)
                )
        finally:
            flow.unregister()
        request.finish()
        return STREAMED


def _csv_lines(rows: List[List[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8")
