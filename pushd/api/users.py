# -*- test-case-name: tests.test_api -*-
"""
``/api/users``: the users the server knows, with their templates and the
devices holding them; creating, replacing and deleting them (which the user
service turns into commands for the devices).
"""

from __future__ import annotations

from typing import Any, List, Optional

from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.api._context import Context
from pushd.api._errors import BadRequest, NotFound
from pushd.api._params import Args, record_query
from pushd.api._resource import ApiResource, api_handler, read_json

__all__ = ["User", "Users"]


class Users(ApiResource):
    """``GET /api/users?sn=&pin=``: users by PIN; ``sn`` keeps those a device sent."""

    isLeaf = False

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    def child(self, name: str) -> Optional[Resource]:
        return User(self._context, name)

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        query = record_query(Args(request.args), ("sn", "pin"))
        try:
            page = await self._context.users.list(query)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return {"items": page.items, "next": page.next}


class User(ApiResource):
    """``GET`` / ``PUT`` / ``DELETE /api/users/{pin}``."""

    def __init__(self, context: Context, pin: str) -> None:
        super().__init__()
        self._context = context
        self._pin = pin

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        user = await self._context.users.get(self._pin)
        if user is None:
            raise NotFound(f"unknown user {self._pin}")
        return user

    @api_handler
    async def render_PUT(self, request: Request) -> Any:
        return await self._context.users.put(self._pin, read_json(request))

    @api_handler
    async def render_DELETE(self, request: Request) -> Any:
        """``?devices=SN1,SN2`` limits the deletion to those devices' copies."""
        devices: Optional[List[str]] = Args(request.args).all("devices") or None
        result = await self._context.users.delete(self._pin, devices)
        if not result.get("deleted") and not result.get("commands"):
            raise NotFound(f"unknown user {self._pin}")
        return result
