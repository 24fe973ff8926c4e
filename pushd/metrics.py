# -*- test-case-name: tests.test_events -*-
"""
Prometheus metrics (``GET /metrics`` on the API listener): requests, devices,
records ingested, command results, event delivery, store latency.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

#: Device endpoints by name; anything else counts as "other".
_ENDPOINTS = {
    b"cdata",
    b"fdata",
    b"getrequest",
    b"devicecmd",
    b"ping",
    b"exchange",
    b"file",
    b"registry",
    b"push",
    b"rtdata",
    b"querydata",
}


def endpoint_of(path: bytes) -> str:
    """``/iclock/cdata.aspx`` -> ``cdata``."""
    last = path.rstrip(b"/").rsplit(b"/", 1)[-1].split(b".", 1)[0]
    return last.decode("ascii") if last in _ENDPOINTS else "other"


class _Live:
    """Gauges read when scraped: devices by state and online, each sink's delivery."""

    def __init__(
        self,
        devices: Callable[[], Iterable[Any]],
        online: Callable[[Any], bool],
        sinks: Callable[[], Iterable[Any]],
    ) -> None:
        self._devices = devices
        self._online = online
        self._sinks = sinks

    def collect(self) -> Iterator[Any]:
        states = GaugeMetricFamily("pushd_devices", "Devices known, by state", labels=["state"])
        online = GaugeMetricFamily(
            "pushd_devices_online", "Devices seen within three polling intervals"
        )
        counts: dict[str, int] = {"pending": 0, "approved": 0, "blocked": 0}
        up = 0
        for device in self._devices():
            counts[device.state] = counts.get(device.state, 0) + 1
            up += 1 if self._online(device) else 0
        for state, count in sorted(counts.items()):
            states.add_metric([state], count)
        online.add_metric([], up)
        yield states
        yield online
        depth = GaugeMetricFamily("pushd_outbox_depth", "Events not yet delivered", labels=["sink"])
        lag = GaugeMetricFamily(
            "pushd_delivery_latency_seconds", "Age of the last event delivered", labels=["sink"]
        )
        delivered = GaugeMetricFamily(
            "pushd_events_delivered", "Events delivered since start", labels=["sink"]
        )
        for dispatcher in self._sinks():
            depth.add_metric([dispatcher.sink.name], dispatcher.pending)
            lag.add_metric([dispatcher.sink.name], dispatcher.latency)
            delivered.add_metric([dispatcher.sink.name], dispatcher.delivered)
        yield depth
        yield lag
        yield delivered


class Metrics:
    """The metrics of one pushd process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pushd_requests",
            "Device requests by endpoint and status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.records = Counter(
            "pushd_records_ingested",
            "Records stored from uploads, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.commands = Counter(
            "pushd_command_results",
            "Command results, by status",
            ["status"],
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "pushd_store_seconds", "Time to commit one upload", registry=self.registry
        )

    def watch(
        self,
        devices: Callable[[], Iterable[Any]],
        online: Callable[[Any], bool],
        sinks: Callable[[], Iterable[Any]],
    ) -> None:
        """Register the gauges read at scrape time."""
        self.registry.register(_Live(devices, online, sinks))

    def request(self, path: bytes, status: int) -> None:
        self.requests.labels(endpoint_of(path), str(status)).inc()

    def ingested(self, counts: Mapping[str, int]) -> None:
        for kind, count in counts.items():
            if count:
                self.records.labels(kind).inc(count)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return bytes(generate_latest(self.registry))
