# -*- test-case-name: tests.test_events -*-
"""``/api/sinks``: where events go, how far delivery got, and the dead letters."""

from __future__ import annotations

from typing import Any, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.api._context import Context
from pushd.api._params import Args, record_query
from pushd.api._resource import ApiResource, api_handler

__all__ = ["DeadLetters", "Sinks"]


class Sinks(ApiResource):
    """``GET /api/sinks``: each sink's position, pending events, failures and dead letters."""

    isLeaf = False

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    def child(self, name: str) -> Optional[Resource]:
        return DeadLetters(self._context) if name == "dead-letters" else None

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        return {"items": await self._context.app.outbox.status(), "next": None}


class DeadLetters(ApiResource):
    """``GET /api/sinks/dead-letters?sink=``: events refused for good, with the reason."""

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        args = Args(request.args)
        query = record_query(args, ())
        page = await self._context.store.dead_letters(args.get("sink"), query)
        return {"items": page.items, "next": page.next}
