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
from dataclasses import dataclass
from typing import Any, Optional

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Site
from zope.interface import implementer

from pushd import __version__
from pushd.config import Config
from pushd.ingest import Ingestor
from pushd.interfaces import IStore, IVerifier, Verdict
from pushd.registry import DeviceRegistry
from pushd.storage import store_from_url
from pushd.web._render import QuietSite
from pushd.web.root import build_root

__all__ = [
    "AcceptAll",
    "Application",
    "PushdService",
    "build_application",
    "build_service",
    "make_site",
]


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

    def __init__(self, store: IStore, registry: DeviceRegistry, reactor: object) -> None:
        super().__init__()
        self.store = store
        self.registry = registry
        self._reactor = reactor
        self.ready: Deferred[None] = Deferred()

    def startService(self) -> None:
        self.running = 1  # children start once the store is open
        d = self.store.open()

        def opened(_: object) -> None:
            self.log.info(
                "pushd {version}: store {kind} open", version=__version__, kind=self.store.kind
            )
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

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        await super().stopService()
        await self.registry.flush_seen()
        await self.store.close()


def make_site(root: IResource) -> Site:
    """The HTTP site of the device tree: no tracebacks on the wire, routine polls not logged."""
    site = QuietSite(root)
    site.displayTracebacks = False
    return site


@dataclass(frozen=True)
class Application:
    """The connected parts of a pushd server, before anything listens."""

    config: Config
    store: IStore
    registry: DeviceRegistry
    ingestor: Ingestor
    root: IResource


def build_application(
    config: Config,
    reactor: Any,
    store: Optional[IStore] = None,
    verifier: Optional[IVerifier] = None,
) -> Application:
    """
    Build and connect the parts.

    :param reactor: provides the clock and the thread pool for blocking work.
    :param store: an already-built store (tests); by default the one named by
        ``config.store_url``.
    :param verifier: the PostVerifyData verifier; by default :class:`AcceptAll`.
    """
    os.makedirs(config.data_dir, exist_ok=True)
    store = store if store is not None else store_from_url(config.store_url, reactor)
    bio = (config.option("MultiBioDataSupport"), config.option("MultiBioPhotoSupport"))
    registry = DeviceRegistry(store, reactor, config.registration, config.allow, bio)
    ingestor = Ingestor(store, registry, verifier or AcceptAll(), config, reactor, reactor)
    root = build_root(registry, ingestor, store, config.options)
    return Application(config, store, registry, ingestor, root)


def build_service(
    config: Config,
    reactor: Any,
    store: Optional[IStore] = None,
    verifier: Optional[IVerifier] = None,
) -> PushdService:
    """The service ``twistd`` runs: the application, its listeners and periodic jobs."""
    app = build_application(config, reactor, store, verifier)
    service = PushdService(app.store, app.registry, reactor)
    site = make_site(app.root)
    for description in config.listen:
        endpoint = serverFromString(reactor, description)
        StreamServerEndpointService(endpoint, site).setServiceParent(service)
    flush = TimerService(config.seen_flush_seconds, app.registry.flush_seen)
    flush.clock = reactor
    flush.setServiceParent(service)
    return service
