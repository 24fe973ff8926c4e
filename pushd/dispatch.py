# -*- test-case-name: tests.test_events -*-
"""
Events out: the outbox delivered to each sink, in order, at least once.

Each sink has a dispatcher that reads the outbox from the sink's stored
position, sends batches (up to ``batch_size`` events; a partial batch once
its oldest event waited ``batch_delay``), and moves the position only after
the sink acknowledged, so a restart resumes where delivery stopped.  A
failure is retried with exponential backoff and jitter; a batch the receiver
refuses for good (``SinkRejected``) goes to the dead letters and delivery
goes on.  Events of a device therefore keep their order.

The presence watcher turns last-seen times into ``device.online`` and
``device.offline`` events.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from pushd._deferred import deferred
from pushd.interfaces import IEventSink, IStore, SinkRejected
from pushd.model import Device

__all__ = ["DeliverySettings", "Outbox", "PresenceWatcher", "SinkDispatcher"]


@dataclass(frozen=True)
class DeliverySettings:
    """How events are batched and retried."""

    batch_size: int = 100
    batch_delay: float = 1.0
    poll_every: float = 1.0
    backoff_min: float = 1.0
    backoff_max: float = 300.0


def _utc(clock: IReactorTime) -> str:
    return datetime.fromtimestamp(clock.seconds(), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(event_time: str, clock: IReactorTime) -> float:
    try:
        moment = datetime.strptime(event_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0.0
    return clock.seconds() - moment.timestamp()


class SinkDispatcher:
    """Delivers the outbox to one sink."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        sink: IEventSink,
        clock: IReactorTime,
        settings: DeliverySettings = DeliverySettings(),
        rng: Optional[random.Random] = None,
        enrich: Callable[[Dict[str, Any]], Dict[str, Any]] = lambda event: event,
    ) -> None:
        self._store = store
        self._enrich = enrich
        self.sink = sink
        self._clock = clock
        self._settings = settings
        self._rng = rng or random.Random()
        self._running: Optional[Deferred[None]] = None
        self._sleeping: Optional[Deferred[None]] = None
        self._stopping = False
        #: Figures for the API and metrics.
        self.position = 0
        self.delivered = 0
        self.dead = 0
        self.failures = 0
        self.last_error = ""
        self.latency = 0.0
        self.pending = 0

    def start(self) -> None:
        self._stopping = False
        self._running = Deferred.fromCoroutine(self._loop())
        self._running.addErrback(
            lambda failure: self.log.failure("Sink {sink} stopped", failure, sink=self.sink.name)
        )

    @deferred
    async def stop(self) -> None:
        self._stopping = True
        if self._sleeping is not None:
            self._sleeping.cancel()
        if self._running is not None:
            try:
                await self._running
            except CancelledError:
                pass
        await self.sink.close()

    async def _sleep(self, seconds: float) -> None:
        self._sleeping = deferLater(self._clock, seconds, lambda: None)
        try:
            await self._sleeping
        finally:
            self._sleeping = None

    async def _loop(self) -> None:
        self.position = await self._store.sink_position(self.sink.name)
        while not self._stopping:
            try:
                sent = await self.deliver_once()
            except CancelledError:
                return
            if self._stopping:
                return
            try:
                if sent is None:
                    await self._sleep(self._backoff())
                elif sent == 0:
                    await self._sleep(self._settings.poll_every)
            except CancelledError:
                return

    def _backoff(self) -> float:
        base = min(
            self._settings.backoff_max, self._settings.backoff_min * 2 ** min(self.failures, 30)
        )
        return base * self._rng.uniform(0.5, 1.0)

    async def deliver_once(self) -> Optional[int]:
        """
        Send the next batch, if any.

        :returns: how many events were handled (0: nothing to send yet), or
            ``None`` after a failure (retry later).
        """
        batch = await self._store.events_after(self.position, self._settings.batch_size)
        if not batch:
            return 0
        oldest = batch[0][1].get("time", "")
        if (
            len(batch) < self._settings.batch_size
            and _age(oldest, self._clock) < self._settings.batch_delay
        ):
            await self._sleep(self._settings.batch_delay)
            batch = await self._store.events_after(self.position, self._settings.batch_size)
        events = [self._enrich(e) for _, e in batch]
        last = batch[-1][0]
        try:
            await self.sink.deliver(events)
        except SinkRejected as refusal:
            reason = str(refusal) or "refused"
            self.log.warn(
                "Sink {sink} refused {n} event(s) for good: {reason}; kept as dead letters",
                sink=self.sink.name,
                n=len(events),
                reason=reason,
            )
            await self._store.add_dead_letters(self.sink.name, events, reason, _utc(self._clock))
            self.dead += len(events)
        except CancelledError:
            raise
        except Exception as error:
            self.failures += 1
            self.last_error = " ".join(str(error).split()) or type(error).__name__
            self.log.warn(
                "Sink {sink} failed ({n} in a row): {error}",
                sink=self.sink.name,
                n=self.failures,
                error=self.last_error,
            )
            return None
        else:
            self.delivered += len(events)
            self.latency = max(0.0, _age(events[-1].get("time", ""), self._clock))
        self.failures = 0
        await self._store.set_sink_position(self.sink.name, last)
        self.position = last
        self.pending = await self._store.outbox_size(last)
        return len(events)


class Outbox:
    """The dispatchers of every sink, and the purge of what all of them delivered."""

    log = Logger()

    def __init__(self, store: IStore, dispatchers: Sequence[SinkDispatcher]) -> None:
        self._store = store
        self.dispatchers = list(dispatchers)

    def start(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.start()

    @deferred
    async def stop(self) -> None:
        for dispatcher in self.dispatchers:
            await dispatcher.stop()

    @deferred
    async def purge(self) -> int:
        """Drop events every sink has delivered (run periodically)."""
        if not self.dispatchers:
            return 0
        low = min([await self._store.sink_position(d.sink.name) for d in self.dispatchers])
        return await self._store.purge_events(low)

    @deferred
    async def status(self) -> List[Dict[str, Any]]:
        """Each sink's figures, for ``GET /api/sinks``."""
        report = []
        for d in self.dispatchers:
            report.append(
                {
                    "name": d.sink.name,
                    "position": d.position,
                    "pending": await self._store.outbox_size(d.position),
                    "delivered": d.delivered,
                    "dead_letters": d.dead,
                    "failures_in_a_row": d.failures,
                    "last_error": d.last_error or None,
                    "latency_seconds": d.latency,
                }
            )
        return report


class PresenceWatcher:
    """``device.online`` / ``device.offline`` events when a device starts or stops being seen."""

    def __init__(
        self, store: IStore, clock: IReactorTime, delay_of: Callable[[Device], float]
    ) -> None:
        self._store = store
        self._clock = clock
        self._delay_of = delay_of
        self._online: Dict[str, bool] = {}

    def is_online(self, device: Device) -> bool:
        """Seen within three polling intervals (CONTRACT 3)."""
        if not device.last_seen:
            return False
        return _age(device.last_seen, self._clock) <= 3 * self._delay_of(device)

    @deferred
    async def check(self) -> int:
        """Compare with the previous check; :returns: how many events were recorded."""
        recorded = 0
        for device in await self._store.list_devices():
            now_online = self.is_online(device)
            before = self._online.get(device.sn)
            self._online[device.sn] = now_online
            if before is None or before == now_online:
                continue
            kind = "device.online" if now_online else "device.offline"
            data = {
                "sn": device.sn,
                "state": device.state,
                "ip": device.ip,
                "last_seen": device.last_seen,
            }
            await self._store.record_event(device.sn, kind, data, _utc(self._clock))
            recorded += 1
        return recorded
