# -*- test-case-name: tests.test_api -*-
"""``/api/commands``: the commands queued for devices, and what became of them."""

from __future__ import annotations

from typing import Any, Dict, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.api._context import Context
from pushd.api._errors import BadRequest, NotFound
from pushd.api._params import Args, record_query
from pushd.api._resource import ApiResource, api_handler
from pushd.model import COMMAND_STATES

__all__ = ["Command", "Commands"]


def _listed(item: Dict[str, Any]) -> Dict[str, Any]:
    """A stored command as ``GET /api/commands/{id}`` shows it: no time is ``null``."""
    return {k: None if k in _TIMES and v == "" else v for k, v in item.items()}


_TIMES = ("created", "sent", "completed")


class Commands(ApiResource):
    """``GET /api/commands?sn=&status=``: oldest first."""

    isLeaf = False

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    def child(self, name: str) -> Optional[Resource]:
        return Command(self._context, name)

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        query = record_query(Args(request.args), ("sn", "status"))
        if query.status is not None and query.status not in COMMAND_STATES:
            raise BadRequest(f"status must be one of {', '.join(COMMAND_STATES)}")
        page = await self._context.query("commands", query)
        return {"items": [_listed(item) for item in page.items], "next": page.next}


class Command(ApiResource):
    """``GET /api/commands/{id}``."""

    def __init__(self, context: Context, cmd_id: str) -> None:
        super().__init__()
        self._context = context
        self._id = cmd_id

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        commands = self._context.commands
        command = await commands.get(self._id)
        if command is None:
            raise NotFound(f"unknown command {self._id}")
        return commands.command_json(command)
