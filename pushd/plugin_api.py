# -*- test-case-name: tests.test_plugins -*-
"""
The plugin API: how plugins are found, and the façade through which an
enabled plugin uses pushd.

Plugins live in the ``pushd.plugins`` namespace package of any installed
distribution (``pushd/plugins/<module>.py``, no ``__init__.py``) and are
found with ``twisted.plugin.getPlugins``; installing a package is enough,
and the operator enables them by name (``--plugin NAME``).  See
docs/plugins.md for a tutorial and :mod:`pushd.interfaces` for the
interfaces (``IPushdPlugin``, ``IResourcePlugin``, ``ITableHandlerPlugin``,
``IVerifierPlugin``).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import getPlugins
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

from pushd._deferred import deferred
from pushd.interfaces import (
    IPushdPlugin,
    IResourcePlugin,
    IStore,
    ITableHandlerPlugin,
    IVerifierPlugin,
)
from pushd.model import IngestResult, Page, RecordQuery
from pushd.protocol.records import OtherRecord, Record

__all__ = [
    "Contained",
    "PluginFacade",
    "installed_plugins",
    "plugin_roles",
    "select_plugins",
]

T = TypeVar("T")

_NAME = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


def installed_plugins() -> Dict[str, Any]:
    """Every plugin of the installed packages, by name."""
    import pushd.plugins

    found: Dict[str, Any] = {}
    for plugin in getPlugins(IPushdPlugin, pushd.plugins):
        name = str(getattr(plugin, "name", ""))
        if _NAME.match(name):
            found.setdefault(name, plugin)
    return found


def plugin_roles(plugin: Any) -> List[str]:
    """What a plugin contributes, for ``--help-plugins``."""
    roles = []
    if IResourcePlugin.providedBy(plugin):
        roles.append("resources")
    if ITableHandlerPlugin.providedBy(plugin):
        tables = ", ".join(str(t) for t in getattr(plugin, "tables", ()))
        roles.append(f"tables {tables}")
    if IVerifierPlugin.providedBy(plugin):
        roles.append("verifier")
    return roles


def select_plugins(names: Sequence[str]) -> List[Any]:
    """
    The installed plugins of these names, in order.

    :raises ValueError: naming a plugin that is not installed.
    """
    installed = installed_plugins()
    missing = [name for name in names if name not in installed]
    if missing:
        known = ", ".join(sorted(installed)) or "none"
        raise ValueError(f"no plugin {missing[0]!r} is installed (installed: {known})")
    return [installed[name] for name in names]


class PluginFacade:
    """
    What an enabled plugin may use of pushd: its logger, the clock, its
    configuration, a thread for blocking work, and the store through a small
    documented API.  Nothing else of pushd is promised to plugins.

    :ivar name: the plugin's name.
    :ivar log: a ``twisted.logger.Logger`` in namespace ``pushd.plugins.<name>``.
    :ivar clock: an ``IReactorTime``.
    :ivar config: the ``[plugin:<name>]`` section of the config file.
    """

    def __init__(self, name: str, store: IStore, reactor: Any, config: Mapping[str, str]) -> None:
        self.name = name
        self.log = Logger(namespace=f"pushd.plugins.{name}")
        self.clock = reactor
        self.config: Dict[str, str] = dict(config)
        self._store = store
        self._reactor = reactor

    def now(self) -> str:
        """The current UTC time as ``YYYY-MM-DDTHH:MM:SSZ``."""
        moment = datetime.fromtimestamp(self.clock.seconds(), tz=timezone.utc)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def in_thread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run blocking work (files, CPU-heavy parsing) off the reactor thread."""
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    def _kind(self, kind: str) -> str:
        if not _NAME.match(kind):
            raise ValueError(f"record kind {kind!r}: letters, digits, '-' and '_' only")
        return f"{self.name}.{kind}"

    def store_records(
        self, sn: str, kind: str, records: Sequence[Sequence[tuple]]
    ) -> Deferred[IngestResult]:
        """
        Store records of the plugin's own ``kind``, each a sequence of
        ``(key, value)`` string pairs, for device ``sn``: committed when the
        Deferred fires; a record stored before (same device, kind and pairs)
        is counted as a duplicate, not stored twice.

        :raises StoreError: (through the Deferred) nothing was stored.
        """
        full = self._kind(kind)
        rows = [OtherRecord(full, tuple((str(k), str(v)) for k, v in pairs)) for pairs in records]
        return self._store.ingest(sn, rows, None, self.now(), None)

    def store_pushd_records(self, sn: str, records: Sequence[Record]) -> Deferred[IngestResult]:
        """Store pushd's own records (``pushd.protocol.records``: punches, users...) for ``sn``."""
        return self._store.ingest(sn, list(records), None, self.now(), None)

    @deferred
    async def records(
        self,
        kind: str,
        sn: Optional[str] = None,
        cursor: Optional[str] = None,
        limit: int = 100,
    ) -> Page:
        """
        A page of the plugin's records of ``kind`` (oldest first) as dicts
        ``{"id", "sn", "fields": {key: value}, "received"}``; a page may hold
        fewer than ``limit`` items, and ``next`` continues after it.
        """
        full = self._kind(kind)
        page = await self._store.query("other", RecordQuery(sn=sn, cursor=cursor, limit=limit))
        items = [
            {
                "id": item["id"],
                "sn": item["sn"],
                "fields": dict(item["fields"]),
                "received": item["received"],
            }
            for item in page.items
            if item["kind"] == full
        ]
        return Page(items, page.next)


class Contained(Resource):
    """
    A plugin's resource, kept from taking the server down: an exception in
    its rendering is logged and answered 503; its children are contained too.
    """

    def __init__(self, wrapped: IResource, plugin: str) -> None:
        super().__init__()
        self._wrapped = wrapped
        self._plugin = plugin
        self._log = Logger(namespace=f"pushd.plugins.{plugin}")
        self.isLeaf = bool(getattr(wrapped, "isLeaf", False))

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        try:
            child = self._wrapped.getChildWithDefault(path, request)
        except Exception:
            self._log.failure("Plugin {plugin} failed to find a child", plugin=self._plugin)
            return _Failed(self._plugin)
        return Contained(child, self._plugin)

    def render(self, request: Request) -> Any:
        try:
            return self._wrapped.render(request)
        except Exception:
            self._log.failure("Plugin {plugin} failed", plugin=self._plugin)
            return _Failed(self._plugin).render(request)


class _Failed(Resource):
    isLeaf = True

    def __init__(self, plugin: str) -> None:
        super().__init__()
        self._plugin = plugin

    def render(self, request: Request) -> bytes:
        body = f"plugin {self._plugin} failed".encode()
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body
