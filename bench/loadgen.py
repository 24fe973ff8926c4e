"""
The load generator ``bench/run.py`` falls back to when ``wrk`` is missing:
the requests of ``bench/iclock.lua`` from ``--connections`` concurrent
connections, one request a connection (``Connection: close``), ending with
the same ``BENCH-RESULT {json}`` line.

It is much slower than wrk: figures measured with it are bounded by it, and
the benchmark says so.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Sequence

from twisted.internet import defer, endpoints, protocol, task
from twisted.internet.error import ConnectError, TimeoutError

_HEADERS = b"User-Agent: iClock Proxy/1.09\r\nAccept: */*\r\nConnection: close\r\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class _Exchange(protocol.Protocol):
    """Send one request; :attr:`finished` fires with all bytes received."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.chunks: List[bytes] = []
        self.finished: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.request)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Any = None) -> None:
        if not self.finished.called:  # not already timed out
            self.finished.callback(b"".join(self.chunks))


def poll_request(host: bytes, sn: str) -> bytes:
    """:returns: a ``getrequest`` poll of ``sn``."""
    return b"GET /iclock/getrequest?SN=%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (
        sn.encode(),
        host,
        _HEADERS,
    )


def ingest_request(host: bytes, sn: str, base: int, first: int, records: int) -> bytes:
    """:returns: an ATTLOG upload of ``records`` lines numbered from ``first``."""
    lines = []
    for i in range(records):
        when = _EPOCH + timedelta(seconds=base + first + i)
        lines.append(f"{i + 1}\t{when:%Y-%m-%d %H:%M:%S}\t0\t1\t\t0\t0\t0\t36.5\t{first + i + 1}\n")
    body = "".join(lines).encode()
    return (
        b"POST /iclock/cdata?SN=%s&table=ATTLOG&Stamp=9999 HTTP/1.1\r\nHost: %s\r\n%s"
        b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s"
        % (sn.encode(), host, _HEADERS, len(body), body)
    )


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _run(reactor: Any, args: argparse.Namespace) -> None:
    endpoint = endpoints.TCP4ClientEndpoint(reactor, args.host, args.port, timeout=30)
    host = f"{args.host}:{args.port}".encode()
    counter = iter(range(10**12))
    width = args.width

    def next_request() -> bytes:
        number = next(counter)
        sn = f"{args.prefix}{number % args.devices:0{width}d}"
        if args.mode == "poll":
            return poll_request(host, sn)
        return ingest_request(host, sn, args.base, number * args.records, args.records)

    totals: Dict[str, int] = dict.fromkeys(
        ("connect_errors", "timeouts", "status_errors", "non_2xx", "acked", "refused"), 0
    )
    latencies: List[float] = []
    started = reactor.seconds()
    deadline = started + args.seconds

    async def worker(make: Callable[[], bytes]) -> None:
        while reactor.seconds() < deadline:
            exchange = _Exchange(make())
            sent = time.perf_counter()
            try:
                await endpoints.connectProtocol(endpoint, exchange)
            except (ConnectError, TimeoutError):
                totals["connect_errors"] += 1
                await task.deferLater(reactor, 0.01)
                continue
            try:
                reply = await exchange.finished.addTimeout(30, reactor)
            except defer.TimeoutError:
                totals["timeouts"] += 1
                exchange.transport.abortConnection()  # type: ignore[union-attr]
                continue
            latencies.append(time.perf_counter() - sent)
            _count_reply(reply, totals)

    await defer.gatherResults(
        [defer.Deferred.fromCoroutine(worker(next_request)) for _ in range(args.connections)]
    )
    duration = reactor.seconds() - started
    latencies.sort()
    result = {
        "requests": len(latencies),
        "duration_us": int(duration * 1e6),
        "p50_us": int(percentile(latencies, 0.50) * 1e6),
        "p90_us": int(percentile(latencies, 0.90) * 1e6),
        "p99_us": int(percentile(latencies, 0.99) * 1e6),
        "max_us": int((latencies[-1] if latencies else 0) * 1e6),
        "read_errors": 0,
        "write_errors": 0,
        **totals,
    }
    print("BENCH-RESULT " + json.dumps(result), flush=True)


def _count_reply(reply: bytes, totals: Dict[str, int]) -> None:
    head, _, body = reply.partition(b"\r\n\r\n")
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    status = int(match.group(1)) if match else 0
    if status > 399 or status == 0:
        totals["status_errors"] += 1
    if not 200 <= status < 400:
        totals["non_2xx"] += 1
    count = re.match(rb"OK:\s*(\d+)", body) if status == 200 else None
    if count:
        totals["acked"] += int(count.group(1))
    else:
        totals["refused"] += 1


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Python load generator for bench/run.py")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("poll", "ingest"), required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--prefix", default="BENCH")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--base", type=int, default=1_500_000_000)
    args = parser.parse_args(argv)
    task.react(_run, (args,))


if __name__ == "__main__":
    main()
