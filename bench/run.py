"""
Benchmark pushd, and a bare twisted.web server as its ceiling, in one run.

1. Start pushd (``twistd -n pushd``, run by ``--python``) on a free loopback
   port with a fresh SQLite store, and register ``--devices`` devices (one
   handshake each).  Note its peak RSS.
2. Polls: ``--connections`` devices polling ``GET /iclock/getrequest`` for
   ``--seconds``, serial numbers in turn, one connection a request.
3. Ingest: ATTLOG uploads of ``--records`` unique 10-field lines each, from
   the same number of connections.  Acknowledged records come from the
   ``OK: n`` replies; committed records from ``SELECT count(*) FROM
   attendance`` in the SQLite file.  Peak RSS again.
4. The same poll and ingest load against ``bench/bare.py`` (a Resource
   answering ``OK``) on the same interpreter; pushd's rates as a share of it.

The load comes from ``wrk`` with ``bench/iclock.lua`` when it is installed,
else from ``bench/loadgen.py`` (much slower; the output says so).  Everything
listens on 127.0.0.1 only; every wait is bounded; both servers are stopped
(SIGTERM, then SIGKILL) whatever happens.

With ``--store postgresql://...`` pushd runs on that database instead, in a
schema of its own that is dropped afterwards (the driver's ``psycopg`` must
be importable by the Python running this script); with ``--nodes 2`` as
many pushd processes share it, and the load is split between them (each
load generator gets its share of ``--connections``).

Usage::

    python bench/run.py [--seconds 10] [--connections 32] [--python PY] [--json FILE]
                        [--store postgresql://...] [--nodes N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LUA = HERE / "iclock.lua"
ATTENDANCE_TABLE = "attendance"
SN_PREFIX = "BENCH"
USER_AGENT = "iClock Proxy/1.09"
# twistd for a given interpreter; ``python -m twisted`` is ``twist``, which has no -n.
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


class BenchError(Exception):
    """Something that stops the benchmark, with a message for the user."""


def free_port() -> int:
    """:returns: a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(port: int, path: str, timeout: float = 10.0) -> Tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Connection": "close"}
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


class Server:
    """
    A server subprocess in its own session, output to a log file, stopped
    with SIGTERM and, after ``grace`` seconds, SIGKILL.
    """

    def __init__(self, name: str, command: List[str], log: Path, cwd: Path) -> None:
        self.name = name
        self.command = command
        self.log = log
        self.port = 0
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(log, "wb") as output:
            self.process = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, port: int, timeout: float = 60.0) -> float:
        """
        Wait until the server answers HTTP on ``port`` with anything but
        ``503`` (pushd answers 503 until its store is open).

        :returns: seconds it took.
        :raises BenchError: if it exits or does not answer within ``timeout``.
        """
        self.port = port
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.process.returncode} before answering:\n"
                    + self.log_tail()
                )
            try:
                status, _ = _http(port, "/iclock/ping?SN=BENCHREADY", timeout=2)
                if status != 503:
                    return time.monotonic() - started
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer within {timeout:g} s:\n{self.log_tail()}")

    def peak_rss_mb(self) -> Optional[float]:
        """:returns: ``VmHWM`` (peak resident memory) in MB, if /proc has it."""
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        return round(int(match.group(1)) / 1024, 1) if match else None

    def cpu_seconds(self) -> Optional[float]:
        """:returns: user + system CPU time of the process so far."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(grace)


def interpreter_info(python: str) -> Dict[str, str]:
    """:returns: implementation, version and Twisted version of ``python``."""
    probe = (
        "import json, platform, sys, twisted; print(json.dumps({"
        "'implementation': platform.python_implementation(), "
        "'version': platform.python_version(), 'twisted': twisted.__version__, "
        "'executable': sys.executable}))"
    )
    try:
        result = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        raise BenchError(f"cannot use {python} (it needs Twisted): {detail.strip()}") from None
    info: Dict[str, str] = json.loads(result.stdout)
    return info


def pushd_command(
    python: str, port: int, data: Path, extra: Sequence[str], store: Optional[str] = None
) -> List[str]:
    """:returns: the ``twistd -n pushd`` command line of the contract."""
    command = [
        *(python, "-c", TWISTD, "-n", "--pidfile=", "pushd"),
        *("--listen", f"tcp:{port}:interface=127.0.0.1"),
        *("--store", store or f"sqlite:{data / 'b.sqlite3'}"),
        *("--data-dir", str(data)),
        *("--registration", "open"),
    ]
    help_text = subprocess.run(
        [python, "-c", TWISTD, "pushd", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=data,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    ).stdout
    if "--api" in help_text:
        command += ["--api", "none"]  # the benchmark measures the device side only
    return command + list(extra)


def register(port: int, count: int) -> Dict[str, Any]:
    """Handshake ``count`` serial numbers, 8 at a time; :returns: figures."""

    def handshake(number: int) -> bool:
        sn = f"{SN_PREFIX}{number:0{_width(count)}d}"
        path = f"/iclock/cdata?SN={sn}&options=all&language=69&pushver=2.4.1&PushOptionsFlag=1"
        try:
            status, body = _http(port, path, timeout=30)
        except OSError:
            return False
        return status == 200 and body.upper().startswith(b"GET OPTION FROM")

    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(handshake, range(count)))
    return {
        "devices": count,
        "failed": results.count(False),
        "seconds": round(time.monotonic() - started, 2),
    }


def _width(count: int) -> int:
    return max(4, len(str(max(count - 1, 0))))


class LoadGenerator:
    """Runs ``wrk`` with ``bench/iclock.lua``, or ``bench/loadgen.py`` without wrk."""

    def __init__(self, kind: str, python: str, connections: int, threads: int) -> None:
        self.kind = kind
        self.python = python
        self.connections = connections
        self.threads = threads
        self.wrk = shutil.which("wrk")
        if kind == "wrk" and self.wrk is None:
            raise BenchError("--loadgen wrk: wrk is not installed")
        if kind == "auto":
            self.kind = "wrk" if self.wrk else "python"

    def describe(self) -> str:
        if self.kind == "wrk":
            version = subprocess.run(
                [str(self.wrk), "-v"], capture_output=True, text=True, timeout=10
            ).stdout.split("\n")[0]
            words = version.split()
            return f"wrk {words[1] if len(words) > 1 else '?'}"
        why = "wrk not found" if self.wrk is None else "--loadgen python"
        return f"bench/loadgen.py ({why}: rates are bounded by this Python load generator)"

    def run(
        self, port: int, mode: str, seconds: float, devices: int, records: int = 0, lane: int = 0
    ) -> Dict[str, Any]:
        """
        One measurement.

        :returns: requests, rate, latency percentiles (ms), errors, and for
            ``ingest`` the acknowledged and refused counts.
        """
        # each concurrent load (``lane``) punches in a time range of its own
        base = int(time.time()) - (5 + 3 * lane) * 365 * 86400
        width = str(_width(devices))
        if self.kind == "wrk":
            command = [
                str(self.wrk),
                *(f"-t{self.threads}", f"-c{self.connections}", f"-d{max(1, round(seconds))}s"),
                *("--timeout", "30s", "--latency", "-s", str(LUA)),
                f"http://127.0.0.1:{port}/",
                *("--", mode, SN_PREFIX, str(devices), width),
                *(str(records), str(base), str(self.threads)),
            ]
        else:
            command = [
                *(self.python, str(HERE / "loadgen.py"), "--port", str(port), "--mode", mode),
                *("--seconds", str(seconds), "--connections", str(self.connections)),
                *("--prefix", SN_PREFIX, "--devices", str(devices), "--width", width),
                *("--records", str(records or 1), "--base", str(base)),
            ]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the {mode} load did not finish in time") from None
        output = result.stdout + result.stderr
        figures = parse_result(output)
        if figures is None:
            raise BenchError(f"no result from the load generator:\n{output[-2000:]}")
        return figures


def parse_result(output: str) -> Optional[Dict[str, Any]]:
    """
    Read the ``BENCH-RESULT {json}`` line of a load generator (and, from
    wrk's own report, ``Non-2xx or 3xx responses``).

    :returns: the figures with ``rps`` and latencies in ms, or ``None``.
    """
    match = re.search(r"^BENCH-RESULT (\{.*\})\s*$", output, re.MULTILINE)
    if match is None:
        return None
    raw = json.loads(match.group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    seconds = raw["duration_us"] / 1e6 or 1.0
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 3),
        "rps": round(raw["requests"] / seconds, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else raw.get("non_2xx", 0),
        "socket_errors": sum(
            raw[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        "acked": raw["acked"],
        "refused": raw["refused"],
    }


class SQLiteRows:
    """Counts the attendance rows of an SQLite file."""

    def __init__(self, database: Path) -> None:
        self.database = database

    def __call__(self) -> Optional[int]:
        if not self.database.exists():
            return None
        try:
            with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=10) as db:
                (count,) = db.execute(f"SELECT count(*) FROM {ATTENDANCE_TABLE}").fetchone()
        except sqlite3.Error as e:
            print(f"  cannot count {ATTENDANCE_TABLE} rows: {e}", file=sys.stderr)
            return None
        return int(count)


class PostgresSchema:
    """A schema of its own on a PostgreSQL server: pushd's store URL, row counts, removal."""

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise BenchError("--store postgresql://... needs psycopg in this Python") from None
        self.psycopg = psycopg
        self.url = url
        self.name = f"pushd_bench_{os.getpid()}_{int(time.time())}"
        self.execute(f"CREATE SCHEMA {self.name}")

    def execute(self, sql: str) -> Any:
        with self.psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
            cursor = db.execute(sql)
            return cursor.fetchone() if cursor.description else None

    def store_url(self) -> str:
        separator = "&" if "?" in self.url else "?"
        return f"{self.url}{separator}options=-csearch_path%3D{self.name}"

    def __call__(self) -> Optional[int]:
        try:
            (count,) = self.execute(f"SELECT count(*) FROM {self.name}.{ATTENDANCE_TABLE}")
        except self.psycopg.Error as e:
            print(f"  cannot count {ATTENDANCE_TABLE} rows: {e}", file=sys.stderr)
            return None
        return int(count)

    def drop(self) -> None:
        self.execute(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def count_rows(counter: Callable[[], Optional[int]], settle: float = 15.0) -> Optional[int]:
    """
    ``SELECT count(*) FROM attendance``, once the count stops changing or
    ``settle`` seconds have passed.

    :returns: the count, or ``None`` if the database or table is missing.
    """
    last: Optional[int] = None
    deadline = time.monotonic() + settle
    while True:
        count = counter()
        if count is None:
            return None
        if count == last or time.monotonic() > deadline:
            return count
        last = count
        time.sleep(0.5)


def _combine(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One run's figures from the concurrent runs against several nodes."""
    if len(runs) == 1:
        return runs[0]
    combined = {
        key: sum(run[key] for run in runs)
        for key in ("requests", "rps", "non_2xx", "socket_errors", "acked", "refused")
    }
    combined["seconds"] = max(run["seconds"] for run in runs)
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):  # the slowest node's
        combined[key] = max(run[key] for run in runs)
    combined["rps"] = round(combined["rps"], 1)
    return combined


def measure(
    servers: Sequence[Server],
    load: LoadGenerator,
    mode: str,
    args: argparse.Namespace,
    rows: Optional[Callable[[], Optional[int]]] = None,
) -> Dict[str, Any]:
    """
    Warm up with polls, then one measured run (against every server at once,
    each with its share of the connections).  Adds the servers' CPU time per
    request and, given ``rows`` (what counts the stored punches), the rows
    committed: during the run (counted the moment the load stops) and in all
    (once the count settles: uploads in flight when the load stopped still
    commit).
    """

    def run_all(run_mode: str, seconds: float) -> Dict[str, Any]:
        with ThreadPoolExecutor(len(servers)) as pool:
            runs = list(
                pool.map(
                    lambda lane: load.run(
                        servers[lane].port, run_mode, seconds, args.devices, args.records, lane
                    ),
                    range(len(servers)),
                )
            )
        return _combine(runs)

    if args.warmup > 0:
        run_all("poll", args.warmup)
    rows_before = count_rows(rows, settle=0) if rows else None
    cpu_before = [server.cpu_seconds() for server in servers]
    figures = run_all(mode, args.seconds)
    cpu_after = [server.cpu_seconds() for server in servers]
    if rows is not None:
        rows_at_end = count_rows(rows, settle=0)
        rows_settled = count_rows(rows)
        if rows_before is not None and rows_at_end is not None and rows_settled is not None:
            figures["committed"] = rows_at_end - rows_before
            figures["committed_per_s"] = round(figures["committed"] / figures["seconds"], 1)
            figures["committed_total"] = rows_settled - rows_before
    if None not in cpu_before and None not in cpu_after and figures["requests"]:
        spent = sum(after - before for after, before in zip(cpu_after, cpu_before))  # type: ignore[operator]
        figures["cpu_ms_per_request"] = round(spent * 1000 / figures["requests"], 3)
    return figures


def bench_pushd(args: argparse.Namespace, load: LoadGenerator, tmp: Path) -> Dict[str, Any]:
    data = tmp / "pushd"
    data.mkdir()
    schema = PostgresSchema(args.store) if args.store else None
    rows: Callable[[], Optional[int]] = schema or SQLiteRows(data / "b.sqlite3")
    store = schema.store_url() if schema else None
    servers: List[Server] = []
    result: Dict[str, Any] = {"store": "postgresql" if schema else "sqlite", "nodes": args.nodes}
    try:
        for node in range(args.nodes):
            port = free_port()
            command = pushd_command(args.python, port, data, args.pushd_arg, store)
            result.setdefault("command", command)
            server = Server(f"pushd node {node + 1}", command, tmp / f"pushd-{node}.log", data)
            servers.append(server)
            result["startup_seconds"] = round(server.wait_ready(port), 2)
        ports = ", ".join(str(server.port) for server in servers)
        print(f"pushd answering on 127.0.0.1:{ports}; registering {args.devices} devices")
        result["registration"] = register(servers[0].port, args.devices)
        if result["registration"]["failed"] == args.devices:
            raise BenchError(f"no handshake succeeded:\n{servers[0].log_tail()}")
        result["rss_mb_registered"] = max(server.peak_rss_mb() or 0 for server in servers)
        if args.nodes > 1:  # the same connections in all, shared between the nodes
            share = max(1, load.connections // args.nodes)
            load = LoadGenerator(load.kind, load.python, share, load.threads)
        print(f"measuring pushd polls ({args.seconds:g} s)")
        result["poll"] = measure(servers, load, "poll", args)
        print(f"measuring pushd ingest ({args.seconds:g} s)")
        ingest = measure(servers, load, "ingest", args, rows)
        ingest["acked_per_s"] = round(ingest["acked"] / ingest["seconds"], 1)
        result["ingest"] = ingest
        result["rss_mb_end"] = max(server.peak_rss_mb() or 0 for server in servers)
    finally:
        for server in servers:
            server.stop()
        if schema is not None:
            schema.drop()
    return result


def bench_bare(args: argparse.Namespace, load: LoadGenerator, tmp: Path) -> Dict[str, Any]:
    port = free_port()
    command = [args.python, str(HERE / "bare.py"), "--listen", f"tcp:{port}:interface=127.0.0.1"]
    server = Server("bare twisted.web", command, tmp / "bare.log", tmp)
    result: Dict[str, Any] = {"command": command}
    try:
        server.wait_ready(port)
        print(f"measuring bare twisted.web polls and ingest ({args.seconds:g} s each)")
        result["poll"] = measure([server], load, "poll", args)
        result["ingest"] = measure([server], load, "ingest", args)
        result["rss_mb_end"] = server.peak_rss_mb()
    finally:
        server.stop()
    return result


def _number(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _share(part: Optional[float], whole: Optional[float]) -> Optional[float]:
    return round(100 * part / whole, 1) if part is not None and whole else None


def report(results: Dict[str, Any]) -> str:
    """:returns: the figures as a text table."""
    pushd, bare = results["pushd"], results["bare"]
    interpreter = results["interpreter"]
    settings = results["settings"]
    records = settings["records"]
    rows = [
        ("poll requests/s", pushd["poll"]["rps"], bare["poll"]["rps"], 0),
        ("poll p50 ms", pushd["poll"]["p50_ms"], bare["poll"]["p50_ms"], 2),
        ("poll p99 ms", pushd["poll"]["p99_ms"], bare["poll"]["p99_ms"], 2),
        ("poll server CPU ms/request", *_both(pushd, bare, "poll", "cpu_ms_per_request"), 3),
        (
            f"ingest requests/s ({records} records)",
            pushd["ingest"]["rps"],
            bare["ingest"]["rps"],
            1,
        ),
        ("ingest records/s acknowledged", pushd["ingest"]["acked_per_s"], None, 0),
        ("ingest records/s committed", pushd["ingest"].get("committed_per_s"), None, 0),
        ("ingest p50 ms", pushd["ingest"]["p50_ms"], bare["ingest"]["p50_ms"], 1),
        ("ingest p99 ms", pushd["ingest"]["p99_ms"], bare["ingest"]["p99_ms"], 1),
        (f"peak RSS MB, {settings['devices']} devices known", pushd["rss_mb_registered"], None, 1),
        ("peak RSS MB at the end", pushd["rss_mb_end"], bare["rss_mb_end"], 1),
    ]
    lines = [
        f"pushd benchmark: {interpreter['implementation']} {interpreter['version']}, "
        f"Twisted {interpreter['twisted']}; {results['load_generator']}",
        f"pushd on {pushd.get('store', 'sqlite')}, {pushd.get('nodes', 1)} node(s); "
        f"{settings['connections']} connections, {settings['seconds']:g} s a run, "
        f"Connection: close, {settings['devices']} devices "
        f"(registered in {pushd['registration']['seconds']:g} s, "
        f"{pushd['registration']['failed']} failed)",
        "",
        f"{'':38} {'pushd':>12} {'bare':>12} {'pushd/bare':>11}",
    ]
    for name, ours, theirs, digits in rows:
        share = _share(ours, theirs) if "requests/s" in name else None
        lines.append(
            f"{name:38} {_number(ours, digits):>12} {_number(theirs, digits):>12} "
            f"{(f'{share:.1f}%' if share is not None else ''):>11}"
        )
    problems = []
    for name in ("poll", "ingest"):
        figures = pushd[name]
        if figures["non_2xx"] or figures["socket_errors"]:
            problems.append(
                f"pushd {name}: {figures['non_2xx']} non-2xx replies, "
                f"{figures['socket_errors']} socket errors"
            )
    if pushd["ingest"]["refused"]:
        problems.append(f"pushd ingest: {pushd['ingest']['refused']} uploads not acknowledged")
    stored = pushd["ingest"].get("committed_total")
    if stored is None:
        problems.append(f"committed rows unknown (no {ATTENDANCE_TABLE} table to count)")
    elif stored < pushd["ingest"]["acked"]:
        problems.append(
            f"pushd ingest: {pushd['ingest']['acked']} records acknowledged "
            f"but only {stored} stored"
        )
    lines += [""] + [f"warning: {problem}" for problem in problems]
    return "\n".join(lines).rstrip()


def _both(pushd: Dict[str, Any], bare: Dict[str, Any], run: str, key: str) -> Tuple[Any, Any]:
    return pushd[run].get(key), bare[run].get(key)


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark pushd against a bare twisted.web server (loopback only)."
    )
    add = parser.add_argument
    add("--python", default=sys.executable, help="interpreter running both servers")
    add("--seconds", type=float, default=10.0, help="length of each measured run")
    add("--connections", type=int, default=32, help="concurrent connections")
    add("--threads", type=int, default=1, help="wrk threads")
    add("--devices", type=int, default=1000, help="devices registered and polled")
    add("--records", type=int, default=1000, help="ATTLOG records per upload")
    add("--warmup", type=float, default=2.0, help="seconds of polls before each run")
    add("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    add("--pushd-arg", action="append", default=[], help="extra pushd option (repeatable)")
    add("--json", type=Path, help="also write the figures to this file")
    add("--keep", action="store_true", help="keep the temporary directory (logs, database)")
    add("--store", help="a postgresql:// URL to run pushd on (default: a fresh SQLite file)")
    add("--nodes", type=int, default=1, help="pushd processes sharing the --store database")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.connections < 1 or args.devices < 1 or args.records < 1:
        parser.error("--seconds, --connections, --devices and --records must be positive")
    if args.nodes < 1 or (args.nodes > 1 and not args.store):
        parser.error("--nodes N (N > 1) needs a shared --store postgresql://...")
    if args.store and not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store takes a postgresql:// URL (SQLite is the default)")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the finally clauses stop the servers.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    with ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="pushd-bench-"))
        if args.keep:
            print(f"keeping {tmp}")
        else:
            stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        try:
            interpreter = interpreter_info(args.python)
            load = LoadGenerator(args.loadgen, args.python, args.connections, args.threads)
            results: Dict[str, Any] = {
                "interpreter": interpreter,
                "load_generator": load.describe(),
                "settings": {
                    key: getattr(args, key)
                    for key in ("seconds", "connections", "threads", "devices", "records")
                },
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            print(results["load_generator"])
            results["pushd"] = bench_pushd(args, load, tmp)
            results["bare"] = bench_bare(args, load, tmp)
        except BenchError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("bench: interrupted", file=sys.stderr)
            return 130
    pushd, bare = results["pushd"], results["bare"]
    results["ratios"] = {
        "poll_rps_percent_of_bare": _share(pushd["poll"]["rps"], bare["poll"]["rps"]),
        "ingest_rps_percent_of_bare": _share(pushd["ingest"]["rps"], bare["ingest"]["rps"]),
    }
    print()
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nfigures written to {args.json}")
    ingest = pushd["ingest"]
    lost = ingest.get("committed_total") is not None and ingest["committed_total"] < ingest["acked"]
    failed = pushd["registration"]["failed"] or ingest["refused"] or lost
    return 1 if failed or pushd["poll"]["non_2xx"] or pushd["ingest"]["non_2xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
