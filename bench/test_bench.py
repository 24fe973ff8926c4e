"""
Tests of the benchmark harness that need no pushd: result parsing, the bare
server, and both load generators against it (1 s each).

Run with ``pytest bench/test_bench.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import run as bench

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  20.01ms   85.00%
    Req/Sec     8.20k   500.00     9.00k    70.00%
  Latency Distribution
     50%    3.11ms
     75%    3.52ms
     90%    4.10ms
     99%    6.50ms
  81234 requests in 10.00s, 9.50MB read
  Non-2xx or 3xx responses: 5
Requests/sec:   8123.40
Transfer/sec:      0.95MB
BENCH-RESULT {"requests": 81234, "duration_us": 10000000, "p50_us": 3110, "p90_us": 4100, \
"p99_us": 6500, "max_us": 20010, "connect_errors": 0, "read_errors": 2, "write_errors": 0, \
"timeouts": 1, "status_errors": 5, "acked": 0, "refused": 0}
"""


def test_parse_result_reads_the_lua_line():
    figures = bench.parse_result(WRK_OUTPUT)
    assert figures == {
        "requests": 81234,
        "seconds": 10.0,
        "rps": 8123.4,
        "p50_ms": 3.11,
        "p90_ms": 4.1,
        "p99_ms": 6.5,
        "max_ms": 20.01,
        "non_2xx": 5,
        "socket_errors": 3,
        "acked": 0,
        "refused": 0,
    }


def test_parse_result_without_result_line():
    assert bench.parse_result("unable to connect to 127.0.0.1:1 Connection refused") is None


def test_report_and_ratios():
    """The table shows pushd's rates as a share of the bare server's."""
    poll = {"rps": 4000.0, "p50_ms": 5.0, "p99_ms": 9.0, "non_2xx": 0, "socket_errors": 0}
    ingest = dict(poll, rps=40.0, acked=40000, refused=0, acked_per_s=40000.0)
    results: dict = {
        "interpreter": {"implementation": "CPython", "version": "3.11.7", "twisted": "26.10.0"},
        "load_generator": "wrk 4.1.0",
        "settings": {"seconds": 10, "connections": 32, "devices": 1000, "records": 1000},
        "pushd": {
            "registration": {"seconds": 1.5, "failed": 0},
            "poll": poll,
            "ingest": dict(ingest, committed_per_s=39000.0, committed_total=40100),
            "rss_mb_registered": 50.0,
            "rss_mb_end": 70.0,
        },
        "bare": {
            "poll": dict(poll, rps=8000.0),
            "ingest": dict(ingest, rps=4000.0),
            "rss_mb_end": 40.0,
        },
    }
    text = bench.report(results)
    assert "CPython 3.11.7" in text
    poll_line = next(line for line in text.splitlines() if line.startswith("poll requests/s"))
    assert poll_line.split()[-3:] == ["4,000", "8,000", "50.0%"]
    assert "warning" not in text
    results["pushd"]["ingest"]["committed_total"] = 100
    assert "acknowledged but only 100 stored" in bench.report(results)


@pytest.fixture
def bare(tmp_path: Path):
    port = bench.free_port()
    command = [
        sys.executable,
        str(bench.HERE / "bare.py"),
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
    ]
    server = bench.Server("bare", command, tmp_path / "bare.log", tmp_path)
    try:
        server.wait_ready(port, timeout=30)
        yield server
    finally:
        server.stop()
    assert server.process.returncode is not None


def test_bare_server_answers_ok(bare):
    assert bench._http(bare.port, "/iclock/getrequest?SN=X") == (200, b"OK")
    assert bare.peak_rss_mb() > 1
    assert bare.cpu_seconds() is not None


@pytest.mark.parametrize("kind", ["wrk", "python"])
@pytest.mark.parametrize("mode", ["poll", "ingest"])
def test_load_generators(bare, kind, mode):
    """Both generators drive the bare server and report the same figures."""
    if kind == "wrk" and bench.shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    load = bench.LoadGenerator(kind, sys.executable, connections=4, threads=1)
    figures = load.run(bare.port, mode, seconds=1, devices=10, records=5)
    assert figures["requests"] > 0
    assert figures["non_2xx"] == 0
    if mode == "ingest":
        assert figures["refused"] == figures["requests"]  # "OK" carries no count
