# -*- test-case-name: tests.test_sinks -*-
"""
The MQTT sink: each event is one QoS 1 message on ``<prefix>/<sn>/<type>``
(``pushd/CKJF201960996/attendance``, ``pushd/CKJF201960996/device.online``),
its payload the event object as compact UTF-8 JSON.

A batch is acknowledged once the broker has sent the PUBACK of every one of
its messages.  The client is paho-mqtt: its network loop runs in its own
thread (``loop_start``), reconnects by itself (1 s, doubling up to 30 s), and
its callbacks come back to the reactor with ``reactor.callFromThread``.
Everything else, :meth:`MqttSink.deliver` included, runs in the reactor
thread; ``Client.publish`` only queues a packet for the network thread.

While the broker is unreachable, :meth:`~MqttSink.deliver` fails at once
(the dispatcher retries with backoff); right after start-up it waits for
the first connection, within the timeout.  A batch whose acknowledgements
do not all arrive within the timeout fails; paho may still deliver its
messages later, which at-least-once delivery allows (receivers deduplicate
by event id).
"""

from __future__ import annotations

import json
import secrets
import threading
from typing import Any, Dict, List, Mapping, NoReturn, Optional, Sequence, Set, Tuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from twisted.internet.defer import Deferred, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from pushd.interfaces import IEventSink, IEventSinkFactory, SinkRejected
from pushd.sinks import sink_name

__all__ = ["DEFAULT_TIMEOUT", "MqttSink", "MqttSinkFactory", "topic_for"]

#: Seconds a batch has to be acknowledged (connection included).
DEFAULT_TIMEOUT = 30.0

#: The topic prefix of ``mqtt://host`` (no path).
DEFAULT_PREFIX = "pushd"

_PORTS = {"mqtt": 1883, "mqtts": 8883}
_KEEPALIVE = 60
_RECONNECT = (1, 30)

_log = Logger()


def _segment(value: Any) -> str:
    """One topic level: no ``/``, no wildcard, never empty."""
    text = "" if value is None else str(value)
    for char in "/+#\x00":
        text = text.replace(char, "_")
    return text or "_"


def topic_for(prefix: str, event: Mapping[str, Any]) -> str:
    """:returns: ``<prefix>/<sn>/<type>``, each level made safe for a topic name."""
    return f"{prefix}/{_segment(event.get('sn'))}/{_segment(event.get('type'))}"


def _encode(event: Mapping[str, Any]) -> bytes:
    text = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode("utf-8")


def _parse(url: str) -> Tuple[bool, str, int, str, Optional[str], Optional[str]]:
    """
    ``mqtt[s]://[user[:password]@]host[:port][/prefix]``.

    :returns: ``(tls, host, port, prefix, user, password)``.
    :raises ValueError: anything else.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise ValueError(f"invalid MQTT sink URL {sink_name(url)}: {e}") from None
    scheme = parts.scheme.lower()
    if scheme not in _PORTS or not parts.hostname:
        raise ValueError(f"invalid MQTT sink URL {sink_name(url)}: use mqtt://host:port/prefix")
    prefix = unquote(parts.path).strip("/") or DEFAULT_PREFIX
    if "+" in prefix or "\x00" in prefix or "#" in url or "?" in url:
        raise ValueError(
            f"invalid MQTT sink URL {sink_name(url)}: the prefix is a topic name,"
            " without '+', '#', '?' or a fragment"
        )
    user = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    return scheme == "mqtts", parts.hostname, port or _PORTS[scheme], prefix, user, password


class _Batch:
    """The acknowledgements one batch waits for; lives in the reactor thread."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.done: Deferred[None] = Deferred()

    def ack(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0 and not self.done.called:
            self.done.callback(None)

    def fail(self, error: Exception) -> None:
        if not self.done.called:
            self.done.errback(error)


@implementer(IEventSink)
class MqttSink:
    """
    Publish events to an MQTT broker with QoS 1.

    Connecting starts at once, in paho's thread.

    :param url: ``mqtt://[user[:password]@]host[:port][/prefix]``, or
        ``mqtts://`` for TLS (certificates checked against the system's CAs;
        port 8883 by default).  The prefix defaults to ``pushd``.
    :param reactor: an ``IReactorTime`` and ``IReactorThreads``.
    :param timeout: seconds for a batch to be acknowledged.
    :raises ValueError: an unusable URL.
    """

    def __init__(self, url: str, reactor: Any, timeout: float = DEFAULT_TIMEOUT) -> None:
        tls, host, port, self.prefix, user, password = _parse(url)
        self.name = sink_name(url)
        self._reactor = reactor
        self._timeout = timeout
        self._where = f"{host}:{port}"
        # reactor thread only
        self._state = "connecting"  # then "up" or "down"
        self._reason = ""
        self._closed = False
        self._connect_waiters: List[Deferred[None]] = []
        self._batches: Set[_Batch] = set()
        # shared with paho's thread, under _lock
        self._lock = threading.Lock()
        self._waiting: Dict[int, _Batch] = {}
        self._early: Set[int] = set()

        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"pushd-{secrets.token_hex(6)}",
            protocol=paho.MQTTv311,
        )
        if tls:
            client.tls_set()
        if user is not None:
            client.username_pw_set(user, password)
        client.reconnect_delay_set(*_RECONNECT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        client.connect_async(host, port, keepalive=_KEEPALIVE)
        client.loop_start()

    def __repr__(self) -> str:
        return f"<MqttSink {self.name}>"

    # -- paho's thread ---------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        if reason.is_failure:
            self._reactor.callFromThread(self._down, f"the broker refused the connection: {reason}")
        else:
            self._reactor.callFromThread(self._up)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self._reactor.callFromThread(self._down, "cannot connect to the broker")

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        self._reactor.callFromThread(self._down, f"connection lost: {reason}")

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Optional[Properties],
    ) -> None:
        # Called under paho's message lock, so ``mid`` cannot be reused before
        # this returns; an ack may come before deliver() recorded its mid.
        with self._lock:
            batch = self._waiting.pop(mid, None)
            if batch is None:
                self._early.add(mid)
                return
        self._reactor.callFromThread(batch.ack)

    # -- the reactor thread ------------------------------------------------

    def _up(self) -> None:
        if self._state != "up":
            _log.info("MQTT sink {sink} connected", sink=self.name)
        self._state = "up"
        waiters, self._connect_waiters = self._connect_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    def _down(self, reason: str) -> None:
        if self._closed:
            return
        if self._state != "down" or reason != self._reason:
            _log.warn("MQTT sink {sink}: {reason}", sink=self.name, reason=reason)
        self._state = "down"
        self._reason = reason
        waiters, self._connect_waiters = self._connect_waiters, []
        for waiter in waiters:
            if not waiter.called:
                waiter.errback(self._unreachable())

    def _unreachable(self) -> ConnectionError:
        return ConnectionError(f"{self.name}: {self._reason} ({self._where})")

    def deliver(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """
        Publish one message per event and wait for every PUBACK.

        :returns: Deferred firing with ``None`` once the broker acknowledged
            every message; failing with :class:`ConnectionError` when the
            broker is unreachable or the sink closed, with
            :class:`TimeoutError` when acknowledgements did not all arrive
            in time, with :class:`SinkRejected` for an event that cannot be
            JSON.
        """
        if not events:
            return succeed(None)
        try:
            messages = [(topic_for(self.prefix, event), _encode(event)) for event in events]
        except (TypeError, ValueError) as e:
            return Deferred.fromCoroutine(self._refuse(f"{self.name}: events are not JSON: {e}"))

        def timed_out(result: object, timeout: float) -> NoReturn:
            raise TimeoutError(
                f"{self.name}: the broker did not acknowledge the batch within {timeout:g} s"
            )

        d = Deferred.fromCoroutine(self._publish(messages))
        return d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=timed_out)

    async def _refuse(self, reason: str) -> None:
        raise SinkRejected(" ".join(reason.split()))

    async def _publish(self, messages: List[Tuple[str, bytes]]) -> None:
        if self._closed:
            raise ConnectionError(f"{self.name} is closed")
        if self._state == "connecting":
            waiter: Deferred[None] = Deferred()
            self._connect_waiters.append(waiter)
            await waiter
        if self._state != "up":
            raise self._unreachable()
        batch = _Batch(len(messages))
        self._batches.add(batch)
        try:
            for topic, payload in messages:
                info = self._client.publish(topic, payload, qos=1)
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    # not queued: no acknowledgement will come for it
                    raise ConnectionError(f"{self.name}: {paho.error_string(info.rc)}")
                with self._lock:
                    early = info.mid in self._early
                    if early:
                        self._early.discard(info.mid)
                    else:
                        self._waiting[info.mid] = batch
                if early:
                    batch.ack()
            await batch.done
        finally:
            self._batches.discard(batch)

    def close(self) -> Deferred[None]:
        """
        Fail the batches still waiting (:class:`ConnectionError`), disconnect
        and stop paho's thread (in a thread pool: joining it blocks).
        """
        if self._closed:
            return succeed(None)
        self._closed = True
        closed = ConnectionError(f"{self.name} is closed")
        for waiter in self._connect_waiters:
            if not waiter.called:
                waiter.errback(closed)
        self._connect_waiters = []
        for batch in list(self._batches):
            batch.fail(closed)

        def stop() -> None:
            self._client.disconnect()
            self._client.loop_stop()

        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), stop)


@implementer(IPlugin, IEventSinkFactory)
class MqttSinkFactory:
    """MQTT brokers: ``mqtt://host:port/prefix`` and ``mqtts://...``."""

    name = "mqtt"
    description = "QoS 1 messages on <prefix>/<sn>/<type> (mqtt://host:port/prefix, mqtts://...)"
    schemes = ("mqtt", "mqtts")

    def build(self, url: str, secret: str, reactor: Any) -> IEventSink:
        """
        A sink connecting at once (in paho's thread).  ``secret`` is not used:
        give broker credentials in the URL.

        :raises ValueError: an unusable URL.
        """
        return MqttSink(url, reactor)
