# -*- test-case-name: tests.test_api -*-
"""
What the API resources are given: the application's parts, the command and
user services, the clock; and the lookups several resources share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Dict, List, Mapping, Optional, Protocol

from twisted.internet.interfaces import IReactorTime

from pushd.api._errors import BadRequest, NotFound
from pushd.api._params import parse_timezone
from pushd.interfaces import IStore
from pushd.model import Command, Device, Page, RecordQuery
from pushd.registry import DeviceRegistry

if TYPE_CHECKING:  # pragma: no cover
    from pushd.service import Application

__all__ = ["Commands", "Context", "Users", "Zones"]


class Commands(Protocol):
    """What the API needs of :class:`pushd.commands.CommandService`."""

    def submit(self, sn: str, body: Mapping[str, Any]) -> Awaitable[Command]:
        """Queue a command for ``sn`` from the POSTed JSON."""

    def get(self, cmd_id: str) -> Awaitable[Optional[Command]]:
        """The command with this id, or ``None``."""

    def command_json(self, command: Command) -> Dict[str, Any]:
        """The command object of the API."""


class Users(Protocol):
    """What the API needs of :class:`pushd.users.UserService`."""

    def put(self, pin: str, body: Mapping[str, Any]) -> Awaitable[Dict[str, Any]]:
        """Create or replace a user and send it to devices: ``{"user", "commands"}``."""

    def delete(self, pin: str, devices: Optional[List[str]]) -> Awaitable[Dict[str, Any]]:
        """Delete a user here and on devices: ``{"deleted", "commands"}``."""

    def get(self, pin: str) -> Awaitable[Optional[Dict[str, Any]]]:
        """One user with templates and devices, or ``None``."""

    def list(self, query: RecordQuery) -> Awaitable[Page]:
        """A page of users."""


@dataclass(frozen=True)
class Context:
    """The dependencies of every API resource."""

    app: Application
    commands: Commands
    users: Users
    clock: IReactorTime

    @property
    def store(self) -> IStore:
        return self.app.store

    @property
    def registry(self) -> DeviceRegistry:
        return self.app.registry

    def option(self, device: Optional[Device], name: str) -> str:
        """A setting of ``device`` (what the server sends it), else the server-wide option."""
        if device is not None and device.settings.get(name):
            return str(device.settings[name])
        return self.app.config.option(name)

    async def query(self, kind: str, query: RecordQuery) -> Page:
        """:meth:`IStore.query`, with the store's ``ValueError`` (bad cursor...) as a 400."""
        try:
            page: Page = await self.store.query(kind, query)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return page

    async def find_device(self, sn: str) -> Optional[Device]:
        """The device, as the registry knows it (its cache is the newest), or ``None``."""
        cached = self.registry.cached(sn)
        if cached is not None:
            return cached
        found: Optional[Device] = await self.store.get_device(sn)
        return found

    async def device(self, sn: str) -> Device:
        """:raises NotFound: an unknown serial number."""
        device = await self.find_device(sn)
        if device is None:
            raise NotFound(f"unknown device {sn}")
        return device

    def zones(self) -> Zones:
        return Zones(self)


class Zones:
    """The time zones of devices, looked up once per request."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self._offsets: Dict[str, Optional[int]] = {}

    async def offset(self, sn: str) -> Optional[int]:
        """Minutes east of UTC of the device clock: its ``TimeZone`` setting, else the server's."""
        if sn not in self._offsets:
            device = await self._context.find_device(sn)
            self._offsets[sn] = parse_timezone(self._context.option(device, "TimeZone"))
        return self._offsets[sn]
