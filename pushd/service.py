# -*- test-case-name: tests.test_service -*-
"""
Wiring: the one place where pushd's parts are built and connected.

:func:`build_service` takes a validated :class:`~pushd.config.Config` and a
reactor and returns the service ``twistd`` runs: the store, the device
registry, the ingestor, the resource tree, one listener per ``--listen``
endpoint and the periodic flush of last-seen times.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import ILogObserver, Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site
from zope.interface import implementer

from pushd import __version__
from pushd.api import build_api
from pushd.commands import CommandService
from pushd.config import Config, Limits
from pushd.dispatch import Outbox, PresenceWatcher, SinkDispatcher
from pushd.files import FileArea
from pushd.ingest import Ingestor
from pushd.interfaces import (
    IEventSink,
    IResourcePlugin,
    IStore,
    ITableHandlerPlugin,
    IVerifier,
    IVerifierPlugin,
    Verdict,
)
from pushd.metrics import Metrics
from pushd.model import Device
from pushd.plugin_api import Contained, PluginFacade
from pushd.registration import Registrar, timezone_minutes
from pushd.registry import DeviceRegistry
from pushd.sessions import CryptoSessions
from pushd.storage import store_from_url
from pushd.users import UserService
from pushd.web._render import QuietSite
from pushd.web._request import LimitedRequest, PeerLimit
from pushd.web.iclock import DeviceServices
from pushd.web.root import SERVED_PATHS, build_root

__all__ = [
    "AcceptAll",
    "Application",
    "PushdService",
    "build_application",
    "build_service",
    "make_site",
]

#: How old a cached device may get when other nodes share the store: none, so
#: a device blocked or re-keyed through another node is never served stale.
_SHARED_REFRESH_SECONDS = 0.0


@implementer(IVerifier)
class AcceptAll:
    """The default verifier: every PostVerifyData request is allowed (answer ``OK``)."""

    def verify(self, sn: str, data: bytes) -> Deferred[Verdict]:
        return succeed(Verdict(True, "OK"))


class PushdService(MultiService):
    """
    Opens the store before anything listens, and closes it after the
    listeners stopped and the last-seen times were flushed.
    """

    log = Logger()

    def __init__(self, app: Application, reactor: object) -> None:
        super().__init__()
        self.app = app
        self.store = app.store
        self.registry = app.registry
        self._reactor = reactor
        self.ready: Deferred[None] = Deferred()
        #: Where the REST API token came from (for the log), or "" without an API.
        self.api_token_source = ""

    def startService(self) -> None:
        self.running = 1  # children start once the store is open
        d = Deferred.fromCoroutine(self._open())

        def opened(_: object) -> None:
            for child in self:
                child.startService()
            self.ready.callback(None)

        def failed(failure: Failure) -> None:
            self.log.critical("Cannot open the store: {failure}", failure=failure)
            self.ready.errback(failure)
            stop = getattr(self._reactor, "stop", None)
            if stop is not None and getattr(self._reactor, "running", False):
                stop()

        d.addCallbacks(opened, failed)

    #: The log observer twistd should use (``--log-format json``), or None for its own.
    log_observer: Any = None

    def setServiceParent(self, parent: Any) -> None:
        # twistd passes its Application here before it starts logging, and
        # uses an ILogObserver component of the Application when there is one.
        if self.log_observer is not None and hasattr(parent, "setComponent"):
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    async def _open(self) -> None:
        await self.store.open()
        self.log.info(
            "pushd {version}: store {kind} open", version=__version__, kind=self.store.kind
        )
        if self.api_token_source:
            self.log.info(
                "REST API on {api}; bearer token from {source}",
                api=self.app.config.api,
                source=self.api_token_source,
            )
        await self.app.commands.load()
        self.app.outbox.start()

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        await self.app.outbox.stop()
        await self.registry.flush_seen()
        await self.store.close()


def api_token(config: Config, environ: Mapping[str, str] = os.environ) -> Tuple[str, str]:
    """
    The REST API's bearer token: ``--api-token``, else ``PUSHD_API_TOKEN``,
    else the one saved in ``<data-dir>/api-token``, created (owner-only) on
    first start.

    :returns: ``(token, where it came from)`` for the log (never the token itself).
    """
    if config.api_token:
        return config.api_token, "--api-token"
    if environ.get("PUSHD_API_TOKEN"):
        return environ["PUSHD_API_TOKEN"], "PUSHD_API_TOKEN"
    path = os.path.join(config.data_dir, "api-token")
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, encoding="ascii") as existing:
            return existing.read().strip(), path
    token = secrets.token_urlsafe(32)
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write(token + "\n")
    return token, path


def make_site(root: IResource, limits: Optional[Limits] = None) -> QuietSite:
    """
    The HTTP site of the device tree: bodies capped before they are buffered,
    idle connections closed, no tracebacks on the wire, routine polls not logged.
    """
    limits = limits or Limits()
    site = QuietSite(root, requestFactory=LimitedRequest, timeout=limits.idle_timeout)
    site.limits = limits
    site.displayTracebacks = False
    return site


@dataclass(frozen=True)
class Application:
    """The connected parts of a pushd server, before anything listens."""

    config: Config
    store: IStore
    registry: DeviceRegistry
    ingestor: Ingestor
    commands: CommandService
    users: UserService
    sessions: CryptoSessions
    root: IResource
    #: ``/api/ext/<plugin>/`` children contributed by resource plugins.
    api_extensions: Mapping[bytes, IResource]
    #: The dispatchers of the event sinks (none without ``--sink``).
    outbox: Outbox
    presence: PresenceWatcher
    metrics: Metrics


def _plugin_parts(
    plugins: Sequence[Any], store: IStore, reactor: Any, config: Config
) -> Tuple[
    Optional[IVerifier],
    Dict[str, Tuple[Any, PluginFacade]],
    Dict[bytes, IResource],
    Dict[bytes, IResource],
]:
    """
    What the enabled plugins contribute: a verifier, table handlers,
    device-tree children and API extensions (resources contained).

    :raises ValueError: two verifiers, two handlers of one table, a device path pushd serves.
    """
    verifier: Optional[IVerifier] = None
    handlers: Dict[str, Tuple[Any, PluginFacade]] = {}
    device: Dict[bytes, IResource] = {}
    api: Dict[bytes, IResource] = {}
    for plugin in plugins:
        name: str = plugin.name
        facade = PluginFacade(name, store, reactor, config.plugin_config.get(name, {}))
        if IVerifierPlugin.providedBy(plugin):
            if verifier is not None:
                raise ValueError(f"plugin {name}: only one verifier plugin may be enabled")
            verifier = plugin.verifier(facade)
        if ITableHandlerPlugin.providedBy(plugin):
            for table in plugin.tables:
                if table.upper() in handlers:
                    raise ValueError(f"plugin {name}: table {table} is handled twice")
                handlers[table.upper()] = (plugin, facade)
        if IResourcePlugin.providedBy(plugin):
            for path, child in plugin.device_children(facade).items():
                if path in SERVED_PATHS or path in device:
                    raise ValueError(f"plugin {name}: /iclock/{path.decode()} is taken")
                device[path] = Contained(child, name)
            children = plugin.api_children(facade)
            if children:
                ext = Resource()
                for path, child in children.items():
                    ext.putChild(path, Contained(child, name))
                api[name.encode()] = ext
    return verifier, handlers, device, api


def build_application(
    config: Config,
    reactor: Any,
    store: Optional[IStore] = None,
    verifier: Optional[IVerifier] = None,
    plugins: Sequence[Any] = (),
    sinks: Sequence[IEventSink] = (),
) -> Application:
    """
    Build and connect the parts.

    :param reactor: provides the clock and the thread pool for blocking work.
    :param store: an already-built store (tests); by default the one named by
        ``config.store_url``.
    :param verifier: the PostVerifyData verifier; by default a verifier
        plugin's, else :class:`AcceptAll`.
    :param plugins: the enabled plugin objects (see :mod:`pushd.plugin_api`).
    :param sinks: where events go; with any, the store keeps an outbox.
    :raises ValueError: plugins that do not fit together.
    """
    os.makedirs(config.data_dir, exist_ok=True)
    store = store if store is not None else store_from_url(config.store_url, reactor)
    store.use_outbox(bool(sinks))
    plugin_verifier, handlers, device_children, api_extensions = _plugin_parts(
        plugins, store, reactor, config
    )
    verifier = verifier or plugin_verifier or AcceptAll()
    metrics = Metrics()
    bio = (config.option("MultiBioDataSupport"), config.option("MultiBioPhotoSupport"))
    # A store shared with other nodes: read the device on every request and
    # ask the store for commands on every poll (another node may change them).
    refresh = _SHARED_REFRESH_SECONDS if store.shared else None
    registry = DeviceRegistry(store, reactor, config.registration, config.allow, bio, refresh)
    sessions = CryptoSessions(store, reactor, config.data_dir)
    ingestor = Ingestor(store, registry, verifier, sessions, config, reactor, handlers, metrics)
    files = FileArea(config.data_dir)
    commands = CommandService(
        store, registry, reactor, files, config.commands, metrics, shared=store.shared
    )
    users = UserService(store, commands, reactor, frozenset(config.sync_groups))
    ingestor.after_commit.append(users.sync_from_device)
    registrar = Registrar(registry, reactor, config)
    services = DeviceServices(registry, ingestor, store, commands, sessions, registrar)
    root = build_root(services, config.options, files, reactor, device_children)
    enrich = utc_enricher(registry, timezone_minutes(config.option("TimeZone", "0")))
    outbox = Outbox(store, [SinkDispatcher(store, sink, reactor, enrich=enrich) for sink in sinks])
    delay = _float(config.option("Delay", "10"), 10.0)

    def delay_of(device: Device) -> float:
        return _float(device.settings.get("Delay", ""), delay)

    presence = PresenceWatcher(store, reactor, delay_of)
    metrics.watch(registry.known, presence.is_online, lambda: outbox.dispatchers)
    return Application(
        config,
        store,
        registry,
        ingestor,
        commands,
        users,
        sessions,
        root,
        api_extensions,
        outbox,
        presence,
        metrics,
    )


def utc_enricher(
    registry: DeviceRegistry, default_minutes: int
) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    """
    Adds ``utc`` to events whose data has a device-local ``time`` (punches,
    operations, photos), using the device's TimeZone setting or the server's.
    """

    def enrich(event: Dict[str, Any]) -> Dict[str, Any]:
        data = event.get("data") or {}
        local = data.get("time")
        if event.get("type") not in ("attendance", "operation", "photo") or not local:
            return event
        device = registry.cached(str(event.get("sn", "")))
        minutes = default_minutes
        if device is not None:
            minutes = timezone_minutes(device.settings.get("TimeZone", ""), default_minutes)
        try:
            moment = datetime.strptime(local, "%Y-%m-%dT%H:%M:%S") - timedelta(minutes=minutes)
        except ValueError:
            return event
        return {**event, "data": {**data, "utc": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}}

    return enrich


def _float(value: str, default: float) -> float:
    try:
        number = float(value)
    except ValueError:
        return default
    return number if number > 0 else default


def build_service(
    config: Config,
    reactor: Any,
    store: Optional[IStore] = None,
    verifier: Optional[IVerifier] = None,
    plugins: Sequence[Any] = (),
    sinks: Optional[Sequence[IEventSink]] = None,
) -> PushdService:
    """
    The service ``twistd`` runs: the application, its listeners and periodic jobs.

    :param sinks: already-built sinks (tests); by default those of ``config.sinks``.
    :raises ValueError: a sink URL that cannot be used.
    """
    if sinks is None:
        sinks = []
        if config.sinks:
            from pushd.sinks.registry import build_sink

            sinks = [build_sink(url, config.sink_secret, reactor) for url in config.sinks]
    app = build_application(config, reactor, store, verifier, plugins, sinks)
    service = PushdService(app, reactor)
    device_site = make_site(app.root, config.limits)
    device_site.metrics = app.metrics
    site = PeerLimit(device_site, config.limits.connections_per_peer)
    for description in config.listen:
        endpoint = serverFromString(reactor, description)
        StreamServerEndpointService(endpoint, site).setServiceParent(service)
    if config.api != "none":
        token, source = api_token(config)
        api = build_api(app, token, app.commands, app.users, reactor, app.api_extensions)
        api_site = Site(api)
        api_site.displayTracebacks = False
        listener = StreamServerEndpointService(serverFromString(reactor, config.api), api_site)
        listener.setServiceParent(service)
        service.api_token_source = source
    jobs: List[Tuple[float, Callable[[], Awaitable[object]]]] = [
        (config.seen_flush_seconds, app.registry.flush_seen),
        (config.commands.expire_every, app.commands.expire),
    ]
    if app.outbox.dispatchers:
        jobs += [(30.0, app.presence.check), (300.0, app.outbox.purge)]
    for interval, job in jobs:
        timer = TimerService(interval, _logged(job))
        timer.clock = reactor
        timer.setServiceParent(service)
    return service


def _logged(job: Callable[[], Awaitable[object]]) -> Callable[[], Deferred[object]]:
    """A periodic job whose failures are logged, so the next tick still runs."""
    log = Logger(namespace="pushd.service")

    def tick() -> Deferred[object]:
        d: Deferred[object] = Deferred.fromCoroutine(_await(job))
        d.addErrback(lambda failure: log.failure("Periodic job failed", failure))
        return d

    return tick


async def _await(job: Callable[[], Awaitable[object]]) -> object:
    return await job()
