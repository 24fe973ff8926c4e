"""
Events out: every stored fact becomes an event in the outbox, written with
its data; dispatchers deliver the outbox to each sink in order, at least
once, with retries and dead letters; presence turns into online/offline.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import pytest_twisted
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pushd.config import Config, default_options
from pushd.dispatch import DeliverySettings, PresenceWatcher, SinkDispatcher
from pushd.interfaces import IEventSink, SinkRejected
from pushd.model import DeviceUpdate, RecordQuery
from pushd.protocol.records import AttLog
from pushd.storage.memory import MemoryStore
from pushd.storage.sqlite import SQLiteStore
from pushd.testing import ImmediateReactor, TestServer
from tests.test_web_iclock import handshake, send, settle


@implementer(IEventSink)
class Recorder:
    """A sink that keeps what it is given, failing or refusing on demand."""

    def __init__(self, name: str = "recorder") -> None:
        self.name = name
        self.batches: List[List[Dict[str, Any]]] = []
        self.outcomes: List[str] = []  # "fail" or "refuse" for the next deliveries
        self.closed = False

    def deliver(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome == "fail":
            return fail(ConnectionRefusedError("receiver down"))
        if outcome == "refuse":
            return fail(SinkRejected("HTTP 400 Bad Request"))
        self.batches.append([dict(e) for e in events])
        return succeed(None)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)

    @property
    def events(self) -> List[Dict[str, Any]]:
        return [e for batch in self.batches for e in batch]


def sinking_server(tmp_path: Any, sink: Recorder) -> TestServer:
    config = Config(data_dir=str(tmp_path), registration="open", options=default_options(0))
    store = MemoryStore()
    server = TestServer(config, store, sinks=[sink])
    settle(server, store.open())
    return server


def test_a_sink_provides_the_interface() -> None:
    assert verifyObject(IEventSink, Recorder())


def test_uploads_become_events_delivered_in_order(tmp_path: Any) -> None:
    sink = Recorder()
    server = sinking_server(tmp_path, sink)
    handshake(server, "EV1")
    body = b"1\t2026-11-24 08:00:00\t0\t1\t0\n2\t2026-11-24 08:00:05\t0\t1\t0"
    assert send(server, "POST", "/iclock/cdata?SN=EV1&table=ATTLOG", body).body == b"OK: 2"
    send(server, "POST", "/iclock/cdata?SN=EV1&table=ATTLOG", body)  # re-sent: no new events
    send(server, "POST", "/iclock/cdata?SN=EV1&table=OPERLOG", b"USER PIN=1\tName=Ann")
    dispatcher = server.app.outbox.dispatchers[0]
    server.reactor.advance(5)  # the oldest event waited more than batch_delay
    assert settle(server, Deferred.fromCoroutine(dispatcher.deliver_once())) == 3
    assert [(e["type"], e["sn"]) for e in sink.events] == [
        ("attendance", "EV1"),
        ("attendance", "EV1"),
        ("user", "EV1"),
    ]
    assert [e["data"]["pin"] for e in sink.events] == ["1", "2", "1"]
    assert settle(server, server.store.sink_position("recorder")) == dispatcher.position
    assert settle(server, Deferred.fromCoroutine(dispatcher.deliver_once())) == 0


def test_a_failed_batch_is_retried_and_a_refused_one_dead_lettered(tmp_path: Any) -> None:
    sink = Recorder()
    server = sinking_server(tmp_path, sink)
    handshake(server, "EV2")
    send(server, "POST", "/iclock/cdata?SN=EV2&table=ATTLOG", b"1\t2026-11-24 08:00:00")
    server.reactor.advance(5)
    dispatcher = server.app.outbox.dispatchers[0]
    sink.outcomes = ["fail", "refuse"]
    assert settle(server, Deferred.fromCoroutine(dispatcher.deliver_once())) is None
    assert dispatcher.failures == 1 and "receiver down" in dispatcher.last_error
    assert dispatcher.position == 0  # nothing acknowledged: still to send
    assert settle(server, Deferred.fromCoroutine(dispatcher.deliver_once())) == 1
    dead = settle(server, server.store.dead_letters("recorder", RecordQuery()))
    assert [(d["event"]["type"], d["reason"]) for d in dead.items] == [
        ("attendance", "HTTP 400 Bad Request")
    ]
    send(server, "POST", "/iclock/cdata?SN=EV2&table=ATTLOG", b"1\t2026-11-24 09:00:00")
    server.reactor.advance(5)
    assert settle(server, Deferred.fromCoroutine(dispatcher.deliver_once())) == 1
    assert [e["data"]["time"] for e in sink.events] == ["2026-11-24T09:00:00"]


def test_backoff_grows_with_failures_and_has_jitter() -> None:
    dispatcher = SinkDispatcher(MemoryStore(), Recorder(), ImmediateReactor(), DeliverySettings())
    delays = []
    for failures in (1, 2, 3, 10, 40):
        dispatcher.failures = failures
        delays.append(dispatcher._backoff())
    assert delays[0] < delays[1] < delays[2] and delays[-1] <= 300
    assert 1.0 <= delays[0] <= 2.0


def test_devices_going_online_and_offline_become_events(tmp_path: Any) -> None:
    sink = Recorder()
    server = sinking_server(tmp_path, sink)
    presence: PresenceWatcher = server.app.presence
    handshake(server, "EV3")  # seen now
    settle(server, presence.check())  # first look: no transition yet
    server.reactor.advance(31)  # Delay 10: three intervals missed
    assert settle(server, presence.check()) == 1
    handshake(server, "EV3")
    settle(server, server.app.registry.flush_seen())
    assert settle(server, presence.check()) == 1
    events = [e for _, e in settle(server, server.store.events_after(0, 100))]
    assert [e["type"] for e in events] == ["device.offline", "device.online"]


@pytest_twisted.ensureDeferred
async def test_undelivered_events_survive_a_restart(tmp_path: Any) -> None:
    from twisted.internet import reactor

    path = str(tmp_path / "pushd.sqlite3")
    store = SQLiteStore(path, reactor)
    store.use_outbox(True)
    await store.open()
    await store.add_device("EV4", "approved", "2026-11-24T08:00:00Z")
    punch = AttLog("1", "2026-11-24T08:00:00", "0", "1", "0")
    await store.ingest("EV4", [punch], None, "2026-11-24T08:00:01Z", None)
    sink = Recorder()
    sink.outcomes = ["fail"]
    dispatcher = SinkDispatcher(store, sink, reactor, DeliverySettings(batch_delay=0))
    assert await dispatcher.deliver_once() is None  # the receiver is down
    await store.close()

    again = SQLiteStore(path, reactor)  # pushd restarted
    again.use_outbox(True)
    await again.open()
    try:
        later = SinkDispatcher(again, sink, reactor, DeliverySettings(batch_delay=0))
        later.position = await again.sink_position(sink.name)
        assert await later.deliver_once() == 1
        assert [e["data"]["pin"] for e in sink.events] == ["1"]
    finally:
        await again.close()


def test_sinks_and_metrics_are_served_by_the_api_behind_the_token(tmp_path: Any) -> None:
    from treq.testing import StubTreq

    from pushd.api import build_api

    sink = Recorder()
    server = sinking_server(tmp_path, sink)
    handshake(server, "EV5")
    send(server, "POST", "/iclock/cdata?SN=EV5&table=ATTLOG", b"1\t2026-11-24 08:00:00")
    app = server.app
    client = StubTreq(
        build_api(app, "tok", app.commands, app.users, server.reactor, app.api_extensions)
    )
    headers = {b"Authorization": [b"Bearer tok"]}
    response = settle(server, client.get("http://api/api/sinks", headers=headers))
    [status] = settle(server, client.json_content(response))["items"]
    assert (status["name"], status["pending"], status["delivered"]) == ("recorder", 1, 0)
    metrics = settle(server, client.get("http://api/metrics", headers=headers))
    text = settle(server, client.content(metrics)).decode()
    assert 'pushd_records_ingested_total{kind="ATTLOG"} 1.0' in text
    assert 'pushd_devices{state="approved"} 1.0' in text
    assert 'pushd_outbox_depth{sink="recorder"}' in text
    assert settle(server, client.get("http://api/metrics")).code == 401


def test_delivered_punches_carry_their_utc_time(tmp_path: Any) -> None:
    sink = Recorder()
    server = sinking_server(tmp_path, sink)
    handshake(server, "EV6")
    settle(server, server.app.registry.update("EV6", DeviceUpdate(settings={"TimeZone": "330"})))
    send(server, "POST", "/iclock/cdata?SN=EV6&table=ATTLOG", b"1\t2026-11-24 08:00:00")
    server.reactor.advance(5)
    dispatcher = server.app.outbox.dispatchers[0]
    settle(server, Deferred.fromCoroutine(dispatcher.deliver_once()))
    [event] = sink.events
    assert event["data"]["utc"] == "2026-11-24T02:30:00Z"  # UTC+05:30
