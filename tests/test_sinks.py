"""
Event sinks: webhooks against a real HTTP receiver on 127.0.0.1 and through
``StubTreq``, MQTT against the Mosquitto broker on 127.0.0.1:1883, JSON lines
to a file and to stdout, and the registry that builds them from ``--sink`` URLs.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import paho.mqtt.client as paho
import pytest
import pytest_twisted
from paho.mqtt.enums import CallbackAPIVersion
from treq.client import HTTPClient
from treq.testing import HasHeaders, RequestSequence, StringStubbingResource, StubTreq
from twisted.internet import defer, reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import Logger, LoggingFile
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site
from zope.interface.verify import verifyObject

from pushd.interfaces import IEventSink, IEventSinkFactory, SinkRejected
from pushd.sinks import sink_name
from pushd.sinks.jsonlines import JsonLinesSink, path_of
from pushd.sinks.mqtt import MqttSink, topic_for
from pushd.sinks.registry import build_sink, scheme_of, sink_factories
from pushd.sinks.webhook import WebhookFailed, WebhookSink, encode_batch, sign

SECRET = "s3cret-key"

EVENTS: List[Dict[str, Any]] = [
    {
        "id": "evt-1",
        "type": "attendance",
        "sn": "CKJF201960996",
        "time": "2024-05-06T01:00:03Z",
        "data": {"id": 1, "pin": "1", "time": "2024-05-06T08:59:12", "status": "0"},
    },
    {
        "id": "evt-2",
        "type": "user",
        "sn": "CKJF201960996",
        "time": "2024-05-06T01:00:04Z",
        "data": {"pin": "42", "name": "Zoë Ünal 李"},
    },
    {
        "id": "evt-3",
        "type": "device.online",
        "sn": "CKJF201960996",
        "time": "2024-05-06T01:00:05Z",
        "data": {"sn": "CKJF201960996", "state": "approved", "ip": "192.168.1.201"},
    },
]


def result_of(d: defer.Deferred[Any]) -> Any:
    """The current result of a Deferred that has fired (a Failure if it failed)."""
    box: List[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


async def failure_of(d: defer.Deferred[Any]) -> BaseException:
    try:
        await d
    except Exception as e:
        return e
    raise AssertionError("the delivery succeeded")


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the reactor run until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        await deferLater(reactor, 0.02, lambda: None)


def closed_port() -> int:
    """A loopback TCP port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- webhooks against a real receiver -------------------------------------------


class Receiver(Resource):
    """Records POSTs and answers them with ``code`` (or never, with ``hang``)."""

    isLeaf = True

    def __init__(self, code: int = 204, body: bytes = b"", hang: bool = False) -> None:
        super().__init__()
        self.code = code
        self.body = body
        self.hang = hang
        self.requests: List[Tuple[bytes, bytes, Dict[bytes, List[bytes]], bytes]] = []
        self.lost: List[Failure] = []

    def render_POST(self, request: Any) -> Any:
        headers = dict(request.requestHeaders.getAllRawHeaders())
        self.requests.append((request.method, request.uri, headers, request.content.read()))
        if self.hang:
            request.notifyFinish().addErrback(self.lost.append)
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        return self.body


async def listen(resource: Resource) -> Tuple[str, Any]:
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(resource))
    return f"http://127.0.0.1:{port.getHost().port}", port


@pytest_twisted.ensureDeferred
async def test_a_webhook_posts_one_signed_batch_with_the_event_ids() -> None:
    receiver = Receiver(200, b"thanks")
    base, port = await listen(receiver)
    sink = build_sink(f"{base}/hooks/pushd?x=1", SECRET, reactor)
    try:
        assert verifyObject(IEventSink, sink)
        assert isinstance(sink, WebhookSink)
        await sink.deliver(EVENTS)
    finally:
        await sink.close()
        await port.stopListening()
    [(method, path, headers, body)] = receiver.requests
    assert (method, path) == (b"POST", b"/hooks/pushd?x=1")
    assert headers[b"Content-Type"] == [b"application/json"]
    assert headers[b"X-Pushd-Event-Ids"] == [b"evt-1,evt-2,evt-3"]
    [signature] = headers[b"X-Pushd-Signature"]
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, b"sha256=" + expected.encode())
    assert json.loads(body) == {"events": EVENTS}
    assert b", " not in body and b": " not in body  # compact
    assert "Zoë Ünal 李".encode() in body  # UTF-8, not \u escapes
    assert headers[b"User-Agent"][0].startswith(b"pushd/")


@pytest_twisted.ensureDeferred
async def test_a_webhook_5xx_fails_the_delivery_for_a_retry() -> None:
    base, port = await listen(Receiver(500, b"database\nis down"))
    sink = build_sink(base + "/", SECRET, reactor)
    try:
        error = await failure_of(sink.deliver(EVENTS))
    finally:
        await sink.close()
        await port.stopListening()
    assert isinstance(error, WebhookFailed)
    assert not isinstance(error, SinkRejected)
    assert "500" in str(error) and "database is down" in str(error)
    assert "\n" not in str(error)


@pytest_twisted.ensureDeferred
async def test_a_webhook_4xx_rejects_the_batch_for_good() -> None:
    receiver = Receiver(404, b"no such hook")
    base, port = await listen(receiver)
    sink = build_sink(base + "/gone", SECRET, reactor)
    try:
        error = await failure_of(sink.deliver(EVENTS))
    finally:
        await sink.close()
        await port.stopListening()
    assert isinstance(error, SinkRejected)
    assert str(error) == f"{base}/gone answered HTTP 404 Not Found: no such hook"
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("code", [408, 429, 302])
@pytest_twisted.ensureDeferred
async def test_a_webhook_asking_to_come_back_later_or_elsewhere_is_retried(code: int) -> None:
    base, port = await listen(Receiver(code))
    sink = build_sink(base + "/", SECRET, reactor)
    try:
        error = await failure_of(sink.deliver(EVENTS))
    finally:
        await sink.close()
        await port.stopListening()
    assert isinstance(error, WebhookFailed)
    assert str(code) in str(error)


@pytest_twisted.ensureDeferred
async def test_a_webhook_that_never_answers_times_out() -> None:
    receiver = Receiver(hang=True)
    base, port = await listen(receiver)
    pool = HTTPConnectionPool(reactor)
    client = HTTPClient(Agent(reactor, pool=pool))
    sink = WebhookSink(base + "/slow", SECRET, client, reactor, timeout=0.3, pool=pool)
    try:
        started = time.monotonic()
        error = await failure_of(sink.deliver(EVENTS))
        assert time.monotonic() - started < 5
        await wait_for(lambda: len(receiver.lost) == 1)  # the connection was dropped
    finally:
        await sink.close()
        await port.stopListening()
    assert isinstance(error, TimeoutError)
    assert str(error) == f"{base}/slow: no complete reply within 0.3 s"
    assert len(receiver.requests) == 1


@pytest_twisted.ensureDeferred
async def test_a_webhook_nobody_listens_to_fails_the_delivery() -> None:
    sink = build_sink(f"http://127.0.0.1:{closed_port()}/hook", SECRET, reactor)
    try:
        error = await failure_of(sink.deliver(EVENTS))
    finally:
        await sink.close()
    assert isinstance(error, WebhookFailed)
    assert "ConnectionRefusedError" in str(error)


@pytest_twisted.ensureDeferred
async def test_webhook_credentials_become_basic_auth_and_stay_out_of_the_name() -> None:
    receiver = Receiver(200)
    base, port = await listen(receiver)
    url = base.replace("http://", "http://hook%20user:p%40ss@") + "/in"
    sink = build_sink(url, SECRET, reactor)
    try:
        await sink.deliver(EVENTS[:1])
    finally:
        await sink.close()
        await port.stopListening()
    assert sink.name == base.replace("http://", "http://hook%20user@") + "/in"
    [(_, path, headers, _)] = receiver.requests
    assert path == b"/in"
    assert headers[b"Authorization"] == [b"Basic aG9vayB1c2VyOnBAc3M="]  # "hook user:p@ss"


# -- webhooks through StubTreq ---------------------------------------------------


def stub_sink(
    responses: List[Tuple[int, Dict[bytes, bytes], bytes]], events: List[Dict[str, Any]]
) -> Tuple[WebhookSink, Any, RequestSequence, List[str], Clock]:
    body = encode_batch(events)
    headers = HasHeaders(
        {
            b"Content-Type": [b"application/json"],
            b"X-Pushd-Event-Ids": [",".join(e["id"] for e in events).encode()],
            b"X-Pushd-Signature": [sign(SECRET.encode(), body).encode()],
        }
    )
    errors: List[str] = []
    sequence = RequestSequence(
        [((b"post", "http://hooks.test/pushd", {}, headers, body), r) for r in responses],
        errors.append,
    )
    stub = StubTreq(StringStubbingResource(sequence))
    clock = Clock()
    sink = WebhookSink("http://hooks.test/pushd", SECRET, stub, clock, timeout=10)
    return sink, stub, sequence, errors, clock


def test_stub_a_2xx_acknowledges_the_batch() -> None:
    sink, stub, sequence, errors, _ = stub_sink([(202, {}, b"")], EVENTS)
    with sequence.consume(pytest.fail):
        d = sink.deliver(EVENTS)
        stub.flush()
        assert result_of(d) is None
    assert errors == []
    assert verifyObject(IEventSink, sink)


def test_stub_every_4xx_but_408_425_429_is_a_rejection() -> None:
    for code in (400, 401, 403, 404, 410, 413, 422):
        sink, stub, sequence, errors, _ = stub_sink([(code, {}, b"x" * 500)], EVENTS[:1])
        with sequence.consume(pytest.fail):
            d = sink.deliver(EVENTS[:1])
            stub.flush()
            failure = result_of(d)
        assert isinstance(failure, Failure) and failure.check(SinkRejected), code
        reason = str(failure.value)
        assert f"HTTP {code}" in reason and len(reason) < 300  # the body is cut
    for code in (408, 425, 429, 500, 502, 503, 301):
        sink, stub, sequence, errors, _ = stub_sink([(code, {}, b"")], EVENTS[:1])
        with sequence.consume(pytest.fail):
            d = sink.deliver(EVENTS[:1])
            stub.flush()
            failure = result_of(d)
        assert failure.check(WebhookFailed) and not failure.check(SinkRejected), code
        assert errors == []


def test_stub_a_retried_batch_is_the_same_request() -> None:
    sink, stub, sequence, errors, _ = stub_sink([(503, {}, b""), (200, {}, b"")], EVENTS)
    with sequence.consume(pytest.fail):
        first = sink.deliver(EVENTS)
        stub.flush()
        assert result_of(first).check(WebhookFailed)
        second = sink.deliver(EVENTS)
        stub.flush()
        assert result_of(second) is None
    assert errors == []


def test_stub_an_empty_batch_sends_nothing() -> None:
    sink, _stub, sequence, errors, _ = stub_sink([], EVENTS)
    with sequence.consume(pytest.fail):
        assert result_of(sink.deliver([])) is None
    assert errors == []


def test_stub_a_slow_receiver_times_out_on_the_sinks_clock() -> None:
    class Silent(Resource):
        isLeaf = True

        def render_POST(self, request: Any) -> Any:
            return NOT_DONE_YET

    clock = Clock()
    stub = StubTreq(Silent())
    sink = WebhookSink("http://hooks.test/x", SECRET, stub, clock, timeout=5)
    d = sink.deliver(EVENTS)
    stub.flush()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    failure = result_of(d)
    assert failure.check(TimeoutError)


def test_stub_an_event_json_cannot_hold_is_rejected() -> None:
    sink, _stub, sequence, _errors, _ = stub_sink([], EVENTS)
    with sequence.consume(pytest.fail):
        failure = result_of(sink.deliver([{"id": "e", "data": {"x": float("nan")}}]))
        assert failure.check(SinkRejected)
        failure = result_of(sink.deliver([{"id": "e", "data": object()}]))
        assert failure.check(SinkRejected)


def test_a_webhook_needs_a_secret() -> None:
    for build in (
        lambda: build_sink("https://hooks.test/x", "", reactor),
        lambda: WebhookSink("https://hooks.test/x", "", None, reactor),
    ):
        with pytest.raises(ValueError) as error:
            build()
        assert "--sink-secret" in str(error.value) and "PUSHD_SINK_SECRET" in str(error.value)


@pytest.mark.parametrize("url", ["https://", "http:///path", "https://host:port/", "ftp://h/"])
def test_a_webhook_needs_a_usable_url(url: str) -> None:
    with pytest.raises(ValueError):
        WebhookSink(url, SECRET, None, reactor)


# -- MQTT against Mosquitto ---------------------------------------------------------


class Subscriber:
    """A paho client collecting ``(topic, qos, payload)`` in its own thread."""

    def __init__(self, topic: str) -> None:
        self.messages: List[Tuple[str, int, bytes]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append(
            (m.topic, m.qos, bytes(m.payload))
        )
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest_twisted.ensureDeferred
async def test_mqtt_publishes_each_event_with_qos_1_on_prefix_sn_type() -> None:
    prefix = f"pushd-test/{secrets.token_hex(4)}"
    subscriber = Subscriber(f"{prefix}/#")
    sink = build_sink(f"mqtt://127.0.0.1:1883/{prefix}/", "", reactor)
    try:
        assert verifyObject(IEventSink, sink)
        assert isinstance(sink, MqttSink) and sink.prefix == prefix
        await wait_for(subscriber.subscribed.is_set)
        await sink.deliver(EVENTS)
        assert sink._waiting == {} and sink._early == set()
        await wait_for(lambda: len(subscriber.messages) == len(EVENTS))
        await sink.deliver(EVENTS[:1])  # and again
        await wait_for(lambda: len(subscriber.messages) == len(EVENTS) + 1)
    finally:
        await sink.close()
        subscriber.stop()
    assert [topic for topic, _, _ in subscriber.messages] == [
        f"{prefix}/CKJF201960996/attendance",
        f"{prefix}/CKJF201960996/user",
        f"{prefix}/CKJF201960996/device.online",
        f"{prefix}/CKJF201960996/attendance",
    ]
    assert {qos for _, qos, _ in subscriber.messages} == {1}
    payloads = [payload for _, _, payload in subscriber.messages]
    assert [json.loads(p) for p in payloads] == [*EVENTS, EVENTS[0]]
    assert "Zoë Ünal 李".encode() in payloads[1]


@pytest_twisted.ensureDeferred
async def test_mqtt_a_large_batch_is_acknowledged_once_every_message_is() -> None:
    prefix = f"pushd-test/{secrets.token_hex(4)}"
    sink = MqttSink(f"mqtt://127.0.0.1/{prefix}", reactor, timeout=20)
    events = [dict(EVENTS[0], id=f"evt-{n}") for n in range(2000)]
    try:
        await sink.deliver(events)
        assert sink._waiting == {} and sink._early == set()
    finally:
        await sink.close()


@pytest_twisted.ensureDeferred
async def test_mqtt_a_broker_that_is_down_fails_the_batch() -> None:
    sink = MqttSink(f"mqtt://127.0.0.1:{closed_port()}/down", reactor, timeout=5)
    try:
        started = time.monotonic()
        error = await failure_of(sink.deliver(EVENTS))
        assert time.monotonic() - started < 4  # at once, not at the timeout
        assert isinstance(error, ConnectionError) and "cannot connect" in str(error)
        error = await failure_of(sink.deliver(EVENTS))  # still down: at once
        assert isinstance(error, ConnectionError)
    finally:
        await sink.close()


class _MuteBroker(Protocol):
    """Accepts the MQTT connection (CONNACK), then acknowledges nothing."""

    def dataReceived(self, data: bytes) -> None:
        if data[:1] == b"\x10":  # CONNECT
            assert self.transport is not None
            self.transport.write(b"\x20\x02\x00\x00")


@pytest_twisted.ensureDeferred
async def test_mqtt_a_batch_without_every_puback_times_out_and_close_fails_the_rest() -> None:
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Factory.forProtocol(_MuteBroker)
    )
    sink = MqttSink(f"mqtt://127.0.0.1:{port.getHost().port}/mute", reactor, timeout=0.5)
    try:
        error = await failure_of(sink.deliver(EVENTS))
        assert isinstance(error, TimeoutError)
        assert "did not acknowledge" in str(error)
        pending = sink.deliver(EVENTS)
        await sink.close()
        error = await failure_of(pending)
        assert isinstance(error, ConnectionError) and "closed" in str(error)
        error = await failure_of(sink.deliver(EVENTS))
        assert isinstance(error, ConnectionError)
    finally:
        await sink.close()  # twice is fine
        await port.stopListening()


def test_mqtt_topics_keep_the_type_and_make_the_serial_number_one_level() -> None:
    assert topic_for("p/q", {"sn": "A1", "type": "device.online"}) == "p/q/A1/device.online"
    assert topic_for("p", {"sn": "A/B+#", "type": "command.completed"}) == (
        "p/A_B__/command.completed"
    )
    assert topic_for("p", {"sn": None, "type": ""}) == "p/_/_"


@pytest_twisted.ensureDeferred
async def test_mqtt_urls() -> None:
    sink = MqttSink("mqtt://bob:hunter2@127.0.0.1:1883", reactor, timeout=1)
    try:
        assert sink.name == "mqtt://bob@127.0.0.1:1883"
        assert sink.prefix == "pushd"
    finally:
        await sink.close()
    for url in ("mqtt:///x", "mqtt://h/a+b", "mqtt://h/a/#", "mqtt://h:99999/x", "mqtt://h/x?y"):
        with pytest.raises(ValueError):
            MqttSink(url, reactor)


# -- JSON lines --------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_json_lines_are_appended_and_synced_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: List[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(threading.current_thread().name)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "events.jsonl"
    sink = build_sink(path.as_uri(), "", reactor)
    try:
        assert verifyObject(IEventSink, sink)
        assert sink.name == path.as_uri()
        await sink.deliver(EVENTS[:2])
        await defer.gatherResults([sink.deliver(EVENTS[2:]), sink.deliver(EVENTS[:1])])
    finally:
        await sink.close()
    lines = path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == [*EVENTS, EVENTS[0]]
    assert "Zoë Ünal 李".encode() in lines[1]
    assert synced and threading.main_thread().name not in synced


@pytest_twisted.ensureDeferred
async def test_json_lines_follow_a_rotated_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonLinesSink("file://" + str(path), reactor, path=str(path))
    try:
        await sink.deliver(EVENTS[:1])
        path.rename(tmp_path / "events.jsonl.1")
        await sink.deliver(EVENTS[1:2])
        path.unlink()
        await sink.deliver(EVENTS[2:])
    finally:
        await sink.close()
    assert json.loads((tmp_path / "events.jsonl.1").read_bytes()) == EVENTS[0]
    assert json.loads(path.read_bytes()) == EVENTS[2]
    error = await failure_of(sink.deliver(EVENTS))  # closed
    assert isinstance(error, ValueError)


@pytest_twisted.ensureDeferred
async def test_json_lines_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    sink = build_sink("-", "", reactor)
    try:
        assert verifyObject(IEventSink, sink)
        assert sink.name == "-"
        await sink.deliver(EVENTS)
        rejected = await failure_of(sink.deliver([{"id": "x", "data": {1j: 2}}]))
        assert isinstance(rejected, SinkRejected)
    finally:
        await sink.close()
    out = capsys.readouterr().out
    assert out.isascii()
    assert [json.loads(line) for line in out.splitlines()] == EVENTS


def test_json_lines_to_stdout_skip_twistds_log(monkeypatch: pytest.MonkeyPatch) -> None:
    real = io.StringIO()
    monkeypatch.setattr(sys, "__stdout__", real)
    monkeypatch.setattr(sys, "stdout", LoggingFile(Logger()))  # what twistd leaves there
    sink = build_sink("-", "", reactor)
    assert sink._out.stream is real  # type: ignore[attr-defined]


def test_json_lines_urls(tmp_path: Path) -> None:
    assert path_of(f"file://{tmp_path}/a.jsonl") == f"{tmp_path}/a.jsonl"
    assert path_of(f"file://localhost{tmp_path}/a%20b.jsonl") == f"{tmp_path}/a b.jsonl"
    for url in (
        f"file://otherhost{tmp_path}/a.jsonl",
        "file://",
        f"file://{tmp_path}",  # a directory
        f"file://{tmp_path}/missing/a.jsonl",
    ):
        with pytest.raises(ValueError):
            build_sink(url, "", reactor)


# -- the registry ------------------------------------------------------------------


def test_the_built_in_sinks_are_plugins_found_by_scheme() -> None:
    factories = sink_factories()
    assert {"http", "https", "mqtt", "mqtts", "file", "-"} <= set(factories)
    assert factories["http"] is factories["https"]
    for factory in factories.values():
        assert verifyObject(IEventSinkFactory, factory)
        assert IPlugin.providedBy(factory)
    assert {factories[s].name for s in ("https", "mqtt", "file")} == {
        "webhook",
        "mqtt",
        "jsonlines",
    }


def test_schemes_are_case_insensitive() -> None:
    assert scheme_of("HTTPS://h/x") == "https"
    assert scheme_of("-") == "-"
    sink = build_sink("HTTPS://hooks.test/x", SECRET, reactor)
    assert isinstance(sink, WebhookSink)


@pytest.mark.parametrize("url", ["ftp://u:pw@h/x", "/var/log/events.jsonl", "", "stdout"])
def test_an_unknown_scheme_says_what_is_expected(url: str) -> None:
    with pytest.raises(ValueError) as error:
        build_sink(url, SECRET, reactor)
    message = str(error.value)
    assert "unknown event sink" in message and "file:///path.jsonl" in message
    assert "pw" not in message and "\n" not in message


def test_names_are_urls_without_passwords() -> None:
    assert sink_name("https://u:pw@hooks.test:8443/x?y=1") == "https://u@hooks.test:8443/x?y=1"
    assert sink_name("https://hooks.test/x") == "https://hooks.test/x"
    assert sink_name("mqtt://:pw@broker/p") == "mqtt://@broker/p"
    assert sink_name("-") == "-"
    sink = build_sink("https://alice:pw@hooks.test/x", SECRET, reactor)
    assert sink.name == "https://alice@hooks.test/x"
