"""
``pushctl`` against a real API server listening on 127.0.0.1, on the real
reactor: in-process through :func:`pushd.ctl.run`, and as a subprocess.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from pushd import ctl
from pushd.api import build_api
from pushd.config import Config, default_options
from pushd.protocol.records import AttLog, FingerTemplate, UserInfo
from pushd.service import Application, build_application
from pushd.storage.memory import MemoryStore

# Twisted's header-name cache compares the client's b"Transfer-Encoding" with
# the server's "Transfer-Encoding" when both run in one process (python -b).
pytestmark = pytest.mark.filterwarnings("ignore::BytesWarning:twisted.web.http_headers")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "ctl-test-token"
SN = "CTL0000001"


class Served:
    """A pushd application with its API on an ephemeral port, and some data."""

    def __init__(self, app: Application, port: Any) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port.getHost().port}"
        self.http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))

    async def ctl(self, *argv: str, env: Optional[Dict[str, str]] = None) -> Tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        if env is None:
            env = {"PUSHD_URL": self.url, "PUSHD_API_TOKEN": TOKEN}
        code = await ctl.run(list(argv), http=self.http, stdout=out, stderr=err, env=env)
        return code, out.getvalue(), err.getvalue()


async def serve(tmp_path: Any) -> Served:
    config = Config(data_dir=str(tmp_path), registration="approve", options=default_options(480))
    store = MemoryStore()
    await store.open()
    app = build_application(config, reactor, store)
    await store.add_device(SN, "approved", "2024-01-01T00:00:00Z")
    await store.add_device("PEND1", "pending", "2024-01-01T00:00:00Z")
    punches = [AttLog(str(n), f"2024-01-02T08:0{n}:00", "0", "1", "0") for n in range(1, 6)]
    await store.ingest(SN, punches, None, "2024-01-02T09:00:00Z", None)
    site = Site(build_api(app, TOKEN, app.commands, app.users, reactor))
    site.displayTracebacks = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return Served(app, port)


def lines(text: str) -> List[str]:
    return text.rstrip("\n").split("\n")


@pytest_twisted.ensureDeferred
async def test_devices_prints_an_aligned_table(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        code, out, err = await served.ctl("devices")
        assert (code, err) == (0, "")
        header, first, second = lines(out)
        assert header.split() == [
            "SN",
            "STATE",
            "ONLINE",
            "LAST",
            "SEEN",
            "IP",
            "FIRMWARE",
            "USERS",
            "ATTLOGS",
            "ALIAS",
        ]
        assert first.split()[:3] == [SN, "approved", "no"]
        assert second.split()[:3] == ["PEND1", "pending", "no"]
        state = header.index("STATE")
        assert first[state:].startswith("approved") and second[state:].startswith("pending")
        assert first.split()[-2] == "5"  # ATTLOGS; ALIAS "-"
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_json_prints_the_api_objects(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        code, out, _ = await served.ctl("--json", "devices")
        assert code == 0
        assert [d["sn"] for d in json.loads(out)] == [SN, "PEND1"]
        code, out, _ = await served.ctl("device", SN, "--json")  # after the command too
        assert json.loads(out)["counts"]["attlogs"] == 5
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_device_prints_key_value_lines_with_nested_counts(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        code, out, _ = await served.ctl("device", SN)
        assert code == 0
        shown = lines(out)
        assert shown[0].split() == ["sn", SN]
        assert "counts:" in shown
        assert any(line.split() == ["attlogs", "5"] and line.startswith("  ") for line in shown)
        assert any(line.split() == ["alias", "-"] for line in shown)
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_approve_approves_and_says_so(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        assert await served.ctl("approve", "PEND1") == (0, "PEND1 approved\n", "")
        device = await served.app.store.get_device("PEND1")
        assert device.state == "approved"
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_crypto_shows_the_fingerprint_and_set_crypto_chooses_a_transport(
    tmp_path: Any,
) -> None:
    served = await serve(tmp_path)
    try:
        code, out, err = await served.ctl("crypto")
        assert (code, err) == (0, "")
        fingerprint = await served.app.sessions.fingerprint()
        assert lines(out) == [
            f"server key fingerprint (SHA-256): {fingerprint}",
            "transports: plain, zkx1",
        ]
        assert await served.ctl("set-crypto", SN, "zkx1") == (0, f"{SN} uses zkx1\n", "")
        assert (await served.app.store.get_device(SN)).crypto == "zkx1"
        code, _, err = await served.ctl("set-crypto", SN, "rot13")
        assert code == 1 and "no crypto transport 'rot13'" in err
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_send_queues_raw_text_or_a_typed_command(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        code, out, _ = await served.ctl("send", SN, "REBOOT")
        queued = re.fullmatch(rf"command (\w+) queued for {SN}: REBOOT\n", out)
        assert code == 0 and queued is not None
        code, out, _ = await served.ctl("command", queued.group(1))
        shown = [line.split() for line in lines(out)]
        assert ["status", "pending"] in shown and ["command", "REBOOT"] in shown
        code, out, _ = await served.ctl(
            "--json",
            "send",
            SN,
            "--kind",
            "query_attlog",
            "--param",
            "start=2024-01-01 00:00:00",
            "--param",
            "end=2024-01-31 23:59:59",
        )
        assert code == 0
        sent = json.loads(out)
        assert sent["command"].startswith("DATA QUERY ATTLOG StartTime=2024-01-01")
        code, out, _ = await served.ctl("--json", "command", sent["id"])
        assert json.loads(out) == sent
        code, out, _ = await served.ctl("commands", "--sn", SN)
        header, *rows = lines(out)
        assert header.split()[:3] == ["ID", "SN", "STATUS"] and len(rows) == 2
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_refusals_are_one_line_on_stderr_with_exit_status_1(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        assert await served.ctl("command", "99") == (
            1,
            "",
            "pushctl: not found: unknown command 99\n",
        )
        code, _, err = await served.ctl("send", SN, "SHELL ls")
        assert code == 1 and err.startswith("pushctl: HTTP 403: ") and err.count("\n") == 1
        assert await served.ctl("device", "NOPE") == (
            1,
            "",
            "pushctl: not found: unknown device NOPE\n",
        )
        code, _, err = await served.ctl("attendance", "--since", "yesterday")
        assert (code, err) == (
            1,
            "pushctl: HTTP 400: since must be an ISO 8601 time "
            "(YYYY-MM-DDTHH:MM:SS), not 'yesterday'\n",
        )
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_wrong_or_missing_token_is_named(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        expected = "pushctl: wrong or missing token (give --token or set PUSHD_API_TOKEN)\n"
        assert await served.ctl("devices", env={"PUSHD_URL": served.url}) == (1, "", expected)
        assert await served.ctl("--token", "nope", "devices") == (1, "", expected)
        # health needs no token
        code, out, _ = await served.ctl("health", env={"PUSHD_URL": served.url})
        assert (code, out.split()[0]) == (0, "ok")
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_options_win_over_the_environment(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        env = {"PUSHD_URL": "http://127.0.0.1:1", "PUSHD_API_TOKEN": "wrong"}
        code, _, _ = await served.ctl("--url", served.url, "--token", TOKEN, "devices", env=env)
        assert code == 0
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_attendance_follows_the_next_cursors(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(ctl, "PAGE_SIZE", 2)
    served = await serve(tmp_path)
    try:
        code, out, _ = await served.ctl("attendance")
        assert code == 0
        header, *rows = lines(out)
        assert header.split()[:4] == ["ID", "SN", "PIN", "TIME"]
        assert [r.split()[2] for r in rows] == ["1", "2", "3", "4", "5"]
        assert rows[0].split()[4] == "2024-01-02T00:01:00Z"  # UTC, TimeZone=8
        code, out, _ = await served.ctl("--json", "attendance", "--limit", "3", "--pin", "2")
        assert [p["pin"] for p in json.loads(out)] == ["2"]
        code, out, _ = await served.ctl("attendance", "--limit", "3")
        assert len(lines(out)) == 4
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_attendance_csv_is_streamed_to_stdout(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        punches = [
            AttLog("9", f"2024-02-01T10:{n // 60:02d}:{n % 60:02d}", "0", "1", "0")
            for n in range(2400)
        ]
        await served.app.store.ingest(SN, punches, None, "2024-02-02T00:00:00Z", None)
        code, out, err = await served.ctl("attendance", "--csv", "--since", "2024-02-01")
        assert (code, err) == (0, "")
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0][:4] == ["id", "sn", "pin", "time"]
        assert len(rows) == 2401 and rows[-1][3] == "2024-02-01T10:39:59"
        code, out, _ = await served.ctl("attendance", "--csv", "--limit", "10")
        assert len(list(csv.reader(io.StringIO(out)))) == 11
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_users_and_user(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        records = [
            UserInfo("7", "Ann Lee", privilege="0", card="1234"),
            FingerTemplate("7", "0", "8", "1", "QUJDREVGR0g=", True),
            FingerTemplate("7", "1", "8", "1", "QUJDREVGR0g=", True),
        ]
        await served.app.store.ingest(SN, records, None, "2024-01-02T09:00:00Z", None)
        code, out, _ = await served.ctl("users")
        header, row = lines(out)
        assert header.split() == [
            "PIN",
            "NAME",
            "PRIVILEGE",
            "CARD",
            "FINGERPRINTS",
            "FACES",
            "DEVICES",
        ]
        assert row.split() == ["7", "Ann", "Lee", "0", "1234", "2", "0", SN]
        code, out, _ = await served.ctl("user", "7")
        assert code == 0 and ["fingerprints", "2"] in [line.split() for line in lines(out)]
        code, out, _ = await served.ctl("--json", "user", "7")
        assert code == 0 and len(json.loads(out)["fingerprints"]) == 2
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_empty_listing_says_none(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        assert await served.ctl("errors") == (0, "(none)\n", "")
        assert await served.ctl("--json", "errors", "--sn", SN) == (0, "[]\n", "")
    finally:
        await served.port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_exits_3(tmp_path: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
    code = await ctl.run(
        ["--url", f"http://127.0.0.1:{closed}", "devices"],
        http=http,
        stdout=out,
        stderr=err,
        env={},
    )
    assert code == 3
    assert (
        err.getvalue() == f"pushctl: cannot reach http://127.0.0.1:{closed}: connection refused\n"
    )


@pytest_twisted.ensureDeferred
async def test_usage_errors_exit_2(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        assert (await served.ctl("send", SN))[0] == 2
        assert (await served.ctl("send", SN, "REBOOT", "--kind", "reboot"))[0] == 2
        code, _, err = await served.ctl("send", SN, "--kind", "x", "--param", "novalue")
        assert (code, err) == (2, "pushctl: --param takes NAME=VALUE, not 'novalue'\n")
        code, _, err = await served.ctl("--url", "localhost:8081", "devices")
        assert code == 2 and "must be an http:// or https:// URL" in err
        assert (await served.ctl("attendance", "--limit", "0"))[0] == 2
    finally:
        await served.port.stopListening()


async def _subprocess(served: Served, *argv: str) -> Tuple[int, str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT, PUSHD_URL=served.url, PUSHD_API_TOKEN=TOKEN)
    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-m", "pushd.ctl", *argv], env=env, path=ROOT
    )
    return code, out.decode(), err.decode()


@pytest_twisted.ensureDeferred
async def test_the_console_script_exits_with_the_status_and_no_traceback(tmp_path: Any) -> None:
    served = await serve(tmp_path)
    try:
        code, out, err = await _subprocess(served, "devices")
        assert (code, err) == (0, "")
        assert out.split("\n")[1].startswith(SN)
        code, out, err = await _subprocess(served, "--token", "bad", "approve", "PEND1")
        assert (code, out) == (1, "")
        assert err == "pushctl: wrong or missing token (give --token or set PUSHD_API_TOKEN)\n"
        code, out, err = await _subprocess(served, "--url", "http://127.0.0.1:1", "devices")
        assert code == 3 and "Traceback" not in err and len(err.splitlines()) == 1
        code, out, err = await _subprocess(served, "attendance", "--csv")
        assert code == 0 and out.startswith("id,sn,pin,time,utc,")
        code, _, err = await _subprocess(served, "frobnicate")
        assert code == 2 and "invalid choice" in err
    finally:
        await served.port.stopListening()
