"""
Soak pushd: thousands of virtual terminals for a while, and watch for growth.

1. Start pushd (``twistd -n pushd`` under ``--python``) on a free loopback
   port with a fresh SQLite store, as ``bench/run.py`` does.
2. Run ``--devices`` terminals (2,000) in this process for ``--seconds``
   (60): each handshakes, then polls ``GET /iclock/getrequest`` every
   ``--poll`` seconds (5, +-20 %), sends INFO with its first poll, and now
   and then (every ``--punch-every`` seconds on average) uploads 1-5 punches
   of its own (``POST /iclock/cdata?table=ATTLOG``), one connection a request
   with ``Connection: close`` like a terminal.  A terminal whose request
   failed keeps its punches and tries again after ``--error-delay`` s.  Each
   terminal connects from its own loopback address (127.x.y.z), as a fleet
   comes from many addresses.
3. Every ``--interval`` seconds, sample the server: resident memory
   (``VmRSS``), open file descriptors (sockets and others, ``/proc/<pid>/fd``),
   CPU, and the requests of the interval: rate, errors, latency p50/p99.
4. Stop the load, let in-flight requests finish, sample once more (the
   quiet server), check that every acknowledged punch is in the database,
   and stop the server.

The verdict compares the end of the run with the end of the warm-up
(``--warmup``, 20 % of the run): resident memory may not grow by more than
``--rss-tolerance`` MB (or 10 %, whichever is larger), the non-socket
descriptors may not change, the quiet server must hold no more sockets than
before the load, every request after the warm-up must have been answered 200
(failures during the warm-up are reported: terminals retry them), and every
acknowledged punch must be stored.

Usage::

    python bench/soak.py [--seconds 60] [--devices 2000] [--python PY] [--json FILE]

Exit status: 0 verdict PASS, 1 FAIL, 2 the soak could not run.  Loopback
only; every wait is bounded; the server is always stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402  (bench/ is not a package)
    BenchError,
    Server,
    free_port,
    interpreter_info,
    pushd_command,
)

USER_AGENT = b"iClock Proxy/1.09"
SN_PREFIX = "SOAK"
REQUEST_TIMEOUT = 30.0


# -- one HTTP exchange, the way a terminal does it ------------------------


class _Exchange(Protocol):
    """Write one request, read the reply until the server closes the connection."""

    def __init__(self, request: bytes, done: defer.Deferred[Tuple[int, bytes]]) -> None:
        self._request = request
        self._done = done
        self._chunks: List[bytes] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self._chunks.append(data)

    def connectionLost(self, reason: Optional[Failure] = None) -> None:
        if self._done.called:
            return
        reason = reason or Failure(ConnectionDone())
        raw = b"".join(self._chunks)
        head, sep, body = raw.partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1]) if sep else 0
        except (IndexError, ValueError):
            status = 0
        if not sep:
            self._done.errback(Failure(ConnectionError(f"no reply ({reason.getErrorMessage()})")))
            return
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length" and value.strip().isdigit():
                if len(body) < int(value):
                    self._done.errback(Failure(ConnectionError("reply cut short")))
                    return
        self._done.callback((status, body))


class _Factory(ClientFactory):
    def __init__(self, request: bytes, done: defer.Deferred[Tuple[int, bytes]]) -> None:
        self.request = request
        self.done = done

    def buildProtocol(self, addr: Any) -> Protocol:
        return _Exchange(self.request, self.done)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.done.called:
            self.done.errback(reason)


@dataclass
class Window:
    """The requests finished during one sampling interval."""

    latencies: List[float] = field(default_factory=list)
    errors: Dict[str, int] = field(default_factory=dict)
    by_kind: Dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1


class Fleet:
    """The virtual terminals and their shared counters."""

    def __init__(self, reactor: Any, port: int, args: argparse.Namespace) -> None:
        self.reactor = reactor
        self.port = port
        self.args = args
        self.window = Window()
        self.total_requests = 0
        self.total_errors: Dict[str, int] = {}
        self.acknowledged = 0
        self.punched = 0
        self.in_flight = 0
        self.running = True
        self.base = int(time.time()) - 3 * 365 * 86400  # punch times of the past
        #: When the run started (time.monotonic()), and (start time, what) of each failure.
        self.t0 = time.monotonic()
        self.failures: List[Tuple[float, str]] = []

    def _address(self, number: int) -> str:
        number += 2  # 127.0.0.2 onwards: not the server's own address
        return f"127.{(number >> 16) & 255}.{(number >> 8) & 255}.{number & 255}"

    async def request(self, number: int, kind: str, target: str, body: bytes = b"") -> int:
        """One request; :returns: the status (0 when there was no answer)."""
        method = b"POST" if body else b"GET"
        head = [
            b"%s %s HTTP/1.1" % (method, target.encode("ascii")),
            b"Host: 127.0.0.1:%d" % self.port,
            b"User-Agent: " + USER_AGENT,
            b"Accept: */*",
            b"Connection: close",
        ]
        if body:
            head += [b"Content-Type: text/plain", b"Content-Length: %d" % len(body)]
        request = b"\r\n".join(head) + b"\r\n\r\n" + body
        done: defer.Deferred[Tuple[int, bytes]] = defer.Deferred()
        connector = self.reactor.connectTCP(
            "127.0.0.1",
            self.port,
            _Factory(request, done),
            timeout=10,
            bindAddress=(self._address(number), 0),
        )
        timer = self.reactor.callLater(REQUEST_TIMEOUT, connector.disconnect)
        self.in_flight += 1
        started = time.monotonic()
        status = 0
        try:
            status, reply = await done
        except Exception as error:
            what = f"{kind}: {type(error).__name__}"
        else:
            what = f"{kind}: HTTP {status}" if status != 200 else ""
            if status == 200 and kind == "upload" and not reply.startswith(b"OK"):
                what, status = f"upload: {reply[:30]!r}", 0
        finally:
            self.in_flight -= 1
            if timer.active():
                timer.cancel()
        window = self.window
        window.latencies.append(time.monotonic() - started)
        window.by_kind[kind] = window.by_kind.get(kind, 0) + 1
        self.total_requests += 1
        if what:
            window.error(what)
            self.total_errors[what] = self.total_errors.get(what, 0) + 1
            self.failures.append((round(started - self.t0, 3), what))
        return status

    async def terminal(self, number: int) -> None:
        """One terminal's life until :attr:`running` turns false."""
        args = self.args
        rng = random.Random(f"{args.seed}:{number}")
        sn = f"{SN_PREFIX}{number:05d}"
        clock = self.reactor
        await task.deferLater(clock, rng.uniform(0, args.poll), lambda: None)
        shaken = False
        info_sent = False
        buffered: List[bytes] = []
        made = 0
        while self.running:
            ok = True
            if not shaken:
                target = f"/iclock/cdata?SN={sn}&options=all&pushver=2.4.1&language=69"
                shaken = ok = await self.request(number, "handshake", target) == 200
            if ok and rng.random() < args.poll / max(args.punch_every, 0.001):
                for _ in range(rng.randint(1, 5)):
                    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.base + made))
                    buffered.append(
                        b"%d\t%s\t0\t1\t0\t0\t0\t0\t36.5\t%d\n"
                        % (1 + made % 50, when.encode(), made + 1)
                    )
                    made += 1
                    self.punched += 1
            if ok and buffered:
                target = f"/iclock/cdata?SN={sn}&table=ATTLOG&Stamp=9999"
                ok = await self.request(number, "upload", target, b"".join(buffered)) == 200
                if ok:
                    self.acknowledged += len(buffered)
                    buffered = []
            if ok:
                target = f"/iclock/getrequest?SN={sn}"
                if not info_sent:
                    target += "&INFO=Ver%202.4.1,20,40,0,10.0.0.2,10,58,12,0,11110"
                ok = await self.request(number, "poll", target) == 200
                info_sent = info_sent or ok
            pause = args.poll * rng.uniform(0.8, 1.2) if ok else args.error_delay
            await task.deferLater(clock, pause, lambda: None)


# -- sampling ------------------------------------------------------------------


def _rss_mb(pid: int) -> Optional[float]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def _fds(pid: int) -> Tuple[int, int]:
    """:returns: (sockets, other descriptors) the process holds open."""
    sockets = other = 0
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return (0, 0)
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            sockets += 1
        else:
            other += 1
    return sockets, other


def _percentile(values: List[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 1)


class Sampler:
    def __init__(self, server: Server, fleet: Fleet) -> None:
        self.server = server
        self.fleet = fleet
        self.samples: List[Dict[str, Any]] = []
        self.started = time.monotonic()
        self._last = self.started
        self._cpu = server.cpu_seconds() or 0.0

    def sample(self, phase: str = "load") -> Dict[str, Any]:
        now = time.monotonic()
        window, self.fleet.window = self.fleet.window, Window()
        cpu = self.server.cpu_seconds() or self._cpu
        sockets, other = _fds(self.server.pid)
        elapsed = max(now - self._last, 1e-6)
        row = {
            "t": round(now - self.started, 1),
            "phase": phase,
            "rss_mb": _rss_mb(self.server.pid),
            "fd_sockets": sockets,
            "fd_other": other,
            "requests": len(window.latencies),
            "rps": round(len(window.latencies) / elapsed, 1),
            "errors": sum(window.errors.values()),
            "p50_ms": _ms(_percentile(window.latencies, 0.50)),
            "p99_ms": _ms(_percentile(window.latencies, 0.99)),
            "cpu_pct": round(100 * (cpu - self._cpu) / elapsed, 1),
            "in_flight": self.fleet.in_flight,
            "by_kind": window.by_kind,
        }
        self._last, self._cpu = now, cpu
        self.samples.append(row)
        _print_row(row)
        return row


_COLUMNS = (
    ("t", "t s", 6),
    ("rss_mb", "RSS MB", 7),
    ("fd_sockets", "socks", 6),
    ("fd_other", "fds", 4),
    ("rps", "req/s", 7),
    ("errors", "errs", 5),
    ("p50_ms", "p50 ms", 7),
    ("p99_ms", "p99 ms", 7),
    ("cpu_pct", "CPU %", 6),
)


def _print_header() -> None:
    print("  ".join(f"{title:>{width}}" for _, title, width in _COLUMNS) + "  phase", flush=True)


def _print_row(row: Dict[str, Any]) -> None:
    cells = []
    for key, _, width in _COLUMNS:
        value = row[key]
        cells.append(f"{'-' if value is None else value:>{width}}")
    print("  ".join(cells) + f"  {row['phase']}", flush=True)


# -- the verdict ---------------------------------------------------------------


def _slope_mb_per_min(samples: List[Dict[str, Any]]) -> Optional[float]:
    points = [(s["t"], s["rss_mb"]) for s in samples if s["rss_mb"] is not None]
    if len(points) < 3:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_r = sum(r for _, r in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if not spread:
        return None
    slope = sum((t - mean_t) * (r - mean_r) for t, r in points) / spread
    return round(slope * 60, 2)


def verdict(result: Dict[str, Any], args: argparse.Namespace) -> Tuple[bool, List[str]]:
    samples = [s for s in result["samples"] if s["phase"] == "load"]
    quiet = result["quiet"]
    baseline = result["baseline"]
    warm_t = args.seconds * args.warmup
    after = [s for s in samples if s["t"] >= warm_t]
    if len(after) < 2:
        return False, ["too few samples after the warm-up: use a longer --seconds"]
    first, last = after[0], after[-1]
    reasons: List[str] = []
    rss_growth = round(last["rss_mb"] - first["rss_mb"], 1)
    allowed = max(args.rss_tolerance, 0.10 * first["rss_mb"])
    result["growth"] = {
        "from_t": first["t"],
        "to_t": last["t"],
        "rss_mb": rss_growth,
        "rss_pct": round(100 * rss_growth / first["rss_mb"], 1),
        "rss_allowed_mb": round(allowed, 1),
        "rss_slope_mb_per_min": _slope_mb_per_min(after),
        "fd_other": last["fd_other"] - first["fd_other"],
        "fd_sockets_quiet_vs_before": quiet["fd_sockets"] - baseline["fd_sockets"],
        "p99_ms_warm": first["p99_ms"],
        "p99_ms_end": last["p99_ms"],
    }
    growth = result["growth"]
    ok = True
    if rss_growth > allowed:
        ok = False
        reasons.append(f"RSS grew {rss_growth} MB after the warm-up (allowed {allowed:.1f})")
    if growth["fd_other"] != 0:
        ok = False
        reasons.append(f"non-socket descriptors changed by {growth['fd_other']}")
    if growth["fd_sockets_quiet_vs_before"] > 0:
        ok = False
        reasons.append(
            f"{growth['fd_sockets_quiet_vs_before']} more sockets held when quiet than before"
        )
    # a failure counts against the run when its request started after the warm-up
    late_errors = sum(1 for started, _ in result["failures"] if started >= first["t"])
    growth["errors_after_warmup"] = late_errors
    growth["errors_in_warmup"] = sum(result["errors"].values()) - late_errors
    if late_errors:
        ok = False
        reasons.append(f"{late_errors} requests failed after the warm-up")
    if result["stored"] is not None and result["stored"] < result["acknowledged"]:
        ok = False
        reasons.append(f"{result['acknowledged'] - result['stored']} acknowledged punches missing")
    return ok, reasons


# -- the run -------------------------------------------------------------------


def _count(database: Path) -> Optional[int]:
    if not database.exists():
        return None
    connection = sqlite3.connect(database.as_uri() + "?mode=ro", uri=True, timeout=30)
    try:
        return int(connection.execute("SELECT count(*) FROM attendance").fetchone()[0])
    finally:
        connection.close()


async def _soak(reactor: Any, server: Server, args: argparse.Namespace) -> Dict[str, Any]:
    fleet = Fleet(reactor, server.port, args)
    sampler = Sampler(server, fleet)
    fleet.t0 = sampler.started
    _print_header()
    baseline = sampler.sample("before")
    started = time.monotonic()
    runs = [defer.Deferred.fromCoroutine(fleet.terminal(n)) for n in range(args.devices)]
    ticks = 0
    while time.monotonic() - started < args.seconds:
        ticks += 1
        wake = started + ticks * args.interval
        await task.deferLater(reactor, max(0.0, wake - time.monotonic()), lambda: None)
        if server.process.poll() is not None:
            raise BenchError(f"pushd exited with {server.process.returncode}:\n{server.log_tail()}")
        sampler.sample("load")
    fleet.running = False
    stop_by = time.monotonic() + REQUEST_TIMEOUT + 5
    while fleet.in_flight and time.monotonic() < stop_by:
        await task.deferLater(reactor, 0.1, lambda: None)
    for run in runs:
        run.cancel()  # those waiting for their next poll
    await defer.DeferredList(runs, consumeErrors=True)
    await task.deferLater(reactor, 2.0, lambda: None)  # closing sockets, last commits
    quiet = sampler.sample("quiet")
    stored = _count(server.log.parent / "b.sqlite3")  # the store bench/run.py's command names
    return {
        "stored": stored,
        "devices": args.devices,
        "seconds": args.seconds,
        "poll_s": args.poll,
        "punch_every_s": args.punch_every,
        "samples": sampler.samples,
        "baseline": baseline,
        "quiet": quiet,
        "requests": fleet.total_requests,
        "errors": fleet.total_errors,
        "failures": fleet.failures,
        "punched": fleet.punched,
        "acknowledged": fleet.acknowledged,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    add = parser.add_argument
    add("--seconds", type=float, default=60.0, help="length of the load (%(default)s)")
    add("--devices", type=int, default=2000, help="virtual terminals (%(default)s)")
    add("--poll", type=float, default=5.0, help="seconds between polls (%(default)s)")
    add("--punch-every", type=float, default=30.0, help="mean s between uploads (%(default)s)")
    add("--error-delay", type=float, default=5.0, help="s before a retry (%(default)s)")
    add("--interval", type=float, help="seconds between samples (default: run/12, >= 5)")
    add("--warmup", type=float, default=0.2, help="share of the run that is warm-up (0.2)")
    add("--rss-tolerance", type=float, default=8.0, help="MB of growth allowed (%(default)s)")
    add("--python", default=sys.executable, help="interpreter of the server (%(default)s)")
    add("--pushd-arg", action="append", default=[], help="extra pushd option, repeatable")
    add("--seed", type=int, default=1, help="random seed (%(default)s)")
    add("--json", help="write the figures to this file")
    add("--keep", action="store_true", help="keep the temporary directory")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.interval is None:
        args.interval = max(5.0, args.seconds / 12)
    if args.devices < 1 or args.seconds <= 0 or args.interval <= 0:
        print("soak: --devices, --seconds and --interval must be positive", file=sys.stderr)
        return 2
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    except (ImportError, ValueError, OSError):
        pass
    workdir = Path(tempfile.mkdtemp(prefix="pushd-soak-"))
    server: Optional[Server] = None
    try:
        info = interpreter_info(args.python)
        port = free_port()
        command = pushd_command(args.python, port, workdir, args.pushd_arg)
        server = Server("pushd", command, workdir / "pushd.log", workdir)
        server.wait_ready(port)
        print(
            f"soak: pushd on {info['implementation']} {info['version']} (Twisted "
            f"{info['twisted']}), {args.devices} devices, poll {args.poll:g} s, an upload "
            f"every {args.punch_every:g} s per device, {args.seconds:g} s, "
            f"samples every {args.interval:g} s"
        )
        outcome: Dict[str, Any] = {}

        async def run(reactor: Any) -> None:
            try:
                outcome.update(await _soak(reactor, server, args))
            except BenchError as error:
                outcome["error"] = str(error)

        task.react(lambda reactor: defer.Deferred.fromCoroutine(run(reactor)), [])
    except SystemExit as exit:
        if exit.code not in (0, None):
            print(f"soak: the load failed (exit {exit.code})", file=sys.stderr)
            return 2
    except BenchError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"soak: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return _report(outcome, info, args)


def _report(result: Dict[str, Any], info: Dict[str, str], args: argparse.Namespace) -> int:
    if "error" in result or not result:
        print(f"soak: {result.get('error', 'no result')}", file=sys.stderr)
        return 2
    result["server"] = info
    ok, reasons = verdict(result, args)
    growth = result.get("growth", {})
    print(
        f"requests {result['requests']}, errors {sum(result['errors'].values())}, "
        f"punches acknowledged {result['acknowledged']} of {result['punched']}, "
        f"stored {result['stored']}"
    )
    if growth:
        print(
            f"after warm-up (t={growth['from_t']} s -> {growth['to_t']} s): RSS "
            f"{growth['rss_mb']:+} MB ({growth['rss_pct']:+} %, slope "
            f"{growth['rss_slope_mb_per_min']} MB/min), non-socket fds "
            f"{growth['fd_other']:+}, sockets when quiet vs before "
            f"{growth['fd_sockets_quiet_vs_before']:+}, p99 {growth['p99_ms_warm']} -> "
            f"{growth['p99_ms_end']} ms, failed requests {growth['errors_in_warmup']} in the "
            f"warm-up and {growth['errors_after_warmup']} after it"
        )
        if result["errors"]:
            print(f"failures by kind: {result['errors']}")
    result["verdict"] = "PASS" if ok else "FAIL"
    result["reasons"] = reasons
    if ok:
        print(
            "VERDICT: PASS - no growth after warm-up, every request after it answered 200,"
            " every acknowledged punch stored"
        )
    else:
        print("VERDICT: FAIL - " + "; ".join(reasons))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
