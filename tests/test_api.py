"""
Layer 2: the management REST API through treq's in-memory client, over a
whole in-memory application whose devices uploaded through the device tree.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from typing import Any, Dict, List, Mapping, Optional
from urllib.parse import quote

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseFailed
from twisted.web.server import Site

from pushd import __version__
from pushd.api import build_api
from pushd.config import Config, default_options
from pushd.errors import StoreError
from pushd.model import Page, RecordQuery
from pushd.protocol.records import AttLog
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer

# Twisted's header-name cache compares the client's b"Transfer-Encoding" with
# the server's "Transfer-Encoding" when both run in one process (python -b).
pytestmark = pytest.mark.filterwarnings("ignore::BytesWarning:twisted.web.http_headers")

DEVICE_BASE = "http://192.168.1.2:8080"
API_BASE = "http://127.0.0.1:8081"
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(200)) + b"\xff\xd9"
SN = "API0000001"


# -- driving requests -----------------------------------------------------------


class Reply:
    def __init__(self, status: int, headers: Dict[bytes, List[bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[bytes]:
        values = self.headers.get(name.lower().encode())
        return values[0] if values else None

    @property
    def json(self) -> Any:
        assert self.header("content-type") == b"application/json; charset=utf-8"
        return json.loads(self.body)


class Api:
    """The application in memory, its device tree and the API over it."""

    def __init__(self, tmp_path: Any, registration: str = "open", store: Any = None) -> None:
        config = Config(
            data_dir=str(tmp_path), registration=registration, options=default_options(480)
        )
        self.store = store or MemoryStore()
        self.server = TestServer(config, self.store)
        self.settle(self.store.open(), self.server.treq)
        app = self.server.app
        self.root = build_api(app, TOKEN, app.commands, app.users, self.server.reactor)
        self.treq = StubTreq(self.root)

    @staticmethod
    def settle(d: Deferred[Any], stub: StubTreq) -> Any:
        results: List[Any] = []
        d.addBoth(results.append)
        stub.flush()
        assert results, "the request did not finish"
        if isinstance(results[0], Failure):
            results[0].raiseException()
        return results[0]

    def _send(
        self, stub: StubTreq, method: str, url: str, data: Any, headers: Mapping[str, str]
    ) -> Reply:
        # bytes names: Twisted's header cache warns (-b) when str and bytes names meet
        kwargs: Dict[str, Any] = {"headers": {k.encode(): [v.encode()] for k, v in headers.items()}}
        if data is not None:
            kwargs["data"] = data if isinstance(data, bytes) else json.dumps(data).encode()
        response = self.settle(stub.request(method, url, **kwargs), stub)
        body = self.settle(stub.content(response), stub)
        raw = {k.lower(): v for k, v in response.headers.getAllRawHeaders()}
        return Reply(response.code, raw, body)

    def call(
        self,
        method: str,
        path: str,
        data: Any = None,
        headers: Optional[Mapping[str, str]] = None,
    ) -> Reply:
        return self._send(
            self.treq, method, API_BASE + path, data, AUTH if headers is None else headers
        )

    def get(self, path: str) -> Any:
        reply = self.call("GET", path)
        assert reply.status == 200, reply.body
        return reply.json

    def device(self, method: str, target: str, body: bytes = b"") -> Reply:
        data = body if method == "POST" else None
        return self._send(self.server.treq, method, DEVICE_BASE + target, data, {})

    def handshake(self, sn: str) -> Reply:
        return self.device("GET", f"/iclock/cdata?SN={sn}&options=all&pushver=2.4.1")

    def punch(self, sn: str, *lines: str) -> None:
        reply = self.device(
            "POST", f"/iclock/cdata?SN={sn}&table=ATTLOG", "\n".join(lines).encode()
        )
        assert reply.status == 200, reply.body

    def upload(self, sn: str, table: str, body: bytes) -> None:
        reply = self.device("POST", f"/iclock/cdata?SN={sn}&table={table}", body)
        assert reply.status == 200, reply.body


@pytest.fixture
def api(tmp_path: Any) -> Api:
    api = Api(tmp_path)
    api.handshake(SN)
    api.punch(
        SN,
        "1\t2024-01-02 08:00:00\t0\t1\t0\t0\t0",
        "2\t2024-01-02 09:30:00\t1\t15\t7",
        "1\t2024-01-02 17:00:00\t1\t1\t0",
    )
    return api


# -- health, tokens, routing ------------------------------------------------------


def test_health_needs_no_token_and_names_the_store_and_the_version(api: Api) -> None:
    reply = api.call("GET", "/api/health", headers={})
    assert reply.status == 200
    assert reply.json == {"status": "ok", "store": "memory", "version": __version__}


@pytest.mark.parametrize(
    "path",
    [
        "/api/devices",
        f"/api/devices/{SN}",
        "/api/commands",
        "/api/attendance",
        "/api/attendance.csv",
        "/api/operations",
        "/api/users",
        "/api/photos",
        "/api/photos/att-1",
        "/api/errors",
        "/api/no-such-thing",
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
    ids=["missing", "wrong", "other-scheme", "longer"],
)
def test_every_path_but_health_refuses_a_missing_or_wrong_token(
    api: Api, path: str, headers: Dict[str, str]
) -> None:
    reply = api.call("GET", path, headers=headers)
    assert reply.status == 401
    assert reply.json == {"error": "wrong or missing token"}
    assert reply.header("www-authenticate") == b'Bearer realm="pushd"'


def test_the_token_scheme_is_case_insensitive(api: Api) -> None:
    reply = api.call("GET", "/api/devices", headers={"Authorization": f"bearer {TOKEN}"})
    assert reply.status == 200


def test_writes_are_refused_without_the_token_too(api: Api) -> None:
    for method, path in [
        ("PATCH", f"/api/devices/{SN}"),
        ("POST", f"/api/devices/{SN}/approve"),
        ("POST", f"/api/devices/{SN}/commands"),
        ("PUT", "/api/users/1"),
        ("DELETE", "/api/users/1"),
    ]:
        assert api.call(method, path, {"state": "blocked"}, headers={}).status == 401
    assert api.server.app.registry.cached(SN).state == "approved"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path",
    ["/", "/api", "/api/", "/api/nothing", "/other", "/api/devices/X/nothing", "/api/health/x"],
)
def test_unknown_paths_are_json_404(api: Api, path: str) -> None:
    reply = api.call("GET", path)
    assert (reply.status, reply.json) == (404, {"error": "not found"})


def test_crypto_shows_the_server_key_fingerprint_and_the_transports(api: Api) -> None:
    crypto = api.call("GET", "/api/crypto").json
    assert crypto["transports"] == ["plain", "zkx1"]
    fingerprint = crypto["server_key_fingerprint"]
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert api.call("GET", "/api/crypto").json == crypto  # one key, kept


def test_patch_chooses_the_crypto_transport_of_a_device(api: Api) -> None:
    assert api.call("GET", f"/api/devices/{SN}").json["crypto"] == "plain"
    device = api.call("PATCH", f"/api/devices/{SN}", {"crypto": "zkx1"}).json
    assert device["crypto"] == "zkx1"
    refused = api.call("PATCH", f"/api/devices/{SN}", {"crypto": "rot13"})
    assert refused.status == 400 and "no crypto transport 'rot13'" in refused.json["error"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/api/devices", b"GET, HEAD"),
        ("DELETE", f"/api/devices/{SN}", b"GET, HEAD, PATCH"),
        ("GET", f"/api/devices/{SN}/approve", b"POST"),
        ("PUT", "/api/attendance", b"GET, HEAD"),
        ("POST", "/api/health", b"GET, HEAD"),
        ("PATCH", "/api/users/1", b"DELETE, GET, HEAD, PUT"),
    ],
)
def test_wrong_method_is_a_json_405_naming_the_allowed_ones(
    api: Api, method: str, path: str, allowed: bytes
) -> None:
    reply = api.call(method, path, {})
    assert reply.status == 405
    assert reply.json == {"error": f"method {method} not allowed here"}
    assert reply.header("allow") == allowed


def test_build_api_refuses_an_empty_token(api: Api) -> None:
    with pytest.raises(ValueError, match="token"):
        app = api.server.app
        build_api(app, "", app.commands, app.users, api.server.reactor)


# -- devices ------------------------------------------------------------------------


def test_devices_lists_state_liveness_counts_and_options(api: Api) -> None:
    api.upload(SN, "options", b"~DeviceName=SpeedFace,FingerFunOn=1")
    api.upload(SN, "USERINFO", b"USER PIN=1\tName=Ann\nUSER PIN=2\tName=Bob")
    page = api.get("/api/devices")
    assert page["next"] is None
    [device] = page["items"]
    assert device["sn"] == SN
    assert device["state"] == "approved"
    assert device["online"] is True
    assert device["last_seen"] == "2023-11-14T22:13:20Z"
    assert device["push_version"] == "2.4.1"
    assert device["options"]["~DeviceName"] == "SpeedFace"
    assert device["settings"] == {}
    assert device["counts"]["attlogs"] == 3
    assert device["counts"]["users"] == 2
    assert device["counts"]["fingerprints"] == 0
    assert api.get(f"/api/devices/{SN}") == device


def test_a_device_is_offline_after_missing_three_polling_intervals(api: Api) -> None:
    api.server.reactor.advance(30)
    assert api.get(f"/api/devices/{SN}")["online"] is True
    api.server.reactor.advance(1)
    assert api.get(f"/api/devices/{SN}")["online"] is False
    api.call("PATCH", f"/api/devices/{SN}", {"settings": {"Delay": 60}})
    assert api.get(f"/api/devices/{SN}")["online"] is True


def test_devices_pages_by_serial_number_and_filters_by_state(tmp_path: Any) -> None:
    api = Api(tmp_path, registration="approve")
    for sn in ("C3", "A1", "B2"):
        api.handshake(sn)
    api.call("POST", "/api/devices/B2/approve")
    first = api.get("/api/devices?limit=2")
    assert [d["sn"] for d in first["items"]] == ["A1", "B2"]
    assert first["next"] == "B2"
    second = api.get(f"/api/devices?limit=2&cursor={first['next']}")
    assert ([d["sn"] for d in second["items"]], second["next"]) == (["C3"], None)
    pending = api.get("/api/devices?state=pending")
    assert [d["sn"] for d in pending["items"]] == ["A1", "C3"]
    assert api.call("GET", "/api/devices?state=lost").status == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/devices/NOPE"),
        ("PATCH", "/api/devices/NOPE"),
        ("POST", "/api/devices/NOPE/approve"),
        ("POST", "/api/devices/NOPE/commands"),
    ],
)
def test_an_unknown_device_is_404(api: Api, method: str, path: str) -> None:
    reply = api.call(method, path, {"alias": "x", "command": "REBOOT"})
    assert (reply.status, reply.json) == (404, {"error": "unknown device NOPE"})


def test_patch_merges_settings_and_replaces_alias_group_and_state(api: Api) -> None:
    reply = api.call("PATCH", f"/api/devices/{SN}", {"settings": {"Delay": 30, "TimeZone": 8}})
    assert reply.status == 200
    assert reply.json["settings"] == {"Delay": "30", "TimeZone": "8"}
    device = api.call(
        "PATCH",
        f"/api/devices/{SN}",
        {"settings": {"Delay": "20"}, "alias": "Front door", "group": "HQ"},
    ).json
    assert device["settings"] == {"Delay": "20", "TimeZone": "8"}
    assert (device["alias"], device["group"]) == ("Front door", "HQ")
    # the registry serves the change: the next handshake sends the new settings
    lines = api.handshake(SN).body.decode().split("\n")
    assert "Delay=20" in lines and "TimeZone=8" in lines
    blocked = api.call("PATCH", f"/api/devices/{SN}", {"state": "blocked"}).json
    assert blocked["state"] == "blocked"
    assert api.device("GET", f"/iclock/getrequest?SN={SN}").status == 401


def test_patch_keeps_the_communication_key_secret(api: Api) -> None:
    device = api.call("PATCH", f"/api/devices/{SN}", {"pushcommkey": "abc123"}).json
    assert device["pushcommkey_set"] is True
    assert "abc123" not in json.dumps(device)
    stored = api.settle(api.store.get_device(SN), api.treq)
    assert stored.pushcommkey == "abc123"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"crypto": 1}, "crypto must be the name of a crypto transport"),
        ({"colour": "red"}, "unknown field: colour"),
        ({"state": "gone"}, "state must be one of pending, approved, blocked"),
        ({"alias": 5}, "alias must be a one-line string"),
        ({"alias": "a\nb"}, "alias must be a one-line string"),
        ({"settings": [1]}, 'settings must be an object: {"Delay": 10, ...}'),
        ({"settings": {"Delay\nX": 1}}, "invalid setting name: 'Delay\\nX'"),
        ({"settings": {"Delay": None}}, "setting Delay must be a string or a number"),
        ({"settings": {"Delay": True}}, "setting Delay must be a string or a number"),
        ({"settings": {"TransFlag": "a\r\nb"}}, "setting TransFlag must be one line"),
    ],
)
def test_patch_rejects_what_it_cannot_apply(api: Api, body: Any, error: str) -> None:
    reply = api.call("PATCH", f"/api/devices/{SN}", body)
    assert (reply.status, reply.json) == (400, {"error": error})
    assert api.get(f"/api/devices/{SN}")["settings"] == {}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"", "a JSON object body is required"),
        (b"[1, 2]", "the body must be a JSON object"),
        (b"\xff", "invalid JSON body"),
        (b"{nope", "invalid JSON body"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_400(api: Api, body: bytes, error: str) -> None:
    reply = api.call("PATCH", f"/api/devices/{SN}", body)
    assert reply.status == 400
    assert reply.json["error"].startswith(error)


def test_approving_a_pending_device_lets_it_upload(tmp_path: Any) -> None:
    api = Api(tmp_path, registration="approve")
    assert api.handshake("NEW1").status == 401
    assert api.get("/api/devices/NEW1")["state"] == "pending"
    reply = api.call("POST", "/api/devices/NEW1/approve")
    assert (reply.status, reply.json["state"]) == (200, "approved")
    assert api.handshake("NEW1").status == 200
    api.punch("NEW1", "7\t2024-03-01 10:00:00\t0\t1\t0")
    assert api.get("/api/attendance?sn=NEW1")["items"][0]["pin"] == "7"


# -- commands -----------------------------------------------------------------------


def test_posting_a_command_answers_201_with_the_command_object(api: Api) -> None:
    reply = api.call("POST", f"/api/devices/{SN}/commands", {"command": "REBOOT"})
    assert reply.status == 201
    command = reply.json
    assert (command["sn"], command["command"], command["status"]) == (SN, "REBOOT", "pending")
    assert {"id", "kind", "family", "attempts", "return_code", "reply", "created"} <= set(command)
    assert reply.header("location") == f"/api/commands/{command['id']}".encode()
    assert api.get(f"/api/commands/{command['id']}") == command
    # the device gets it on its next poll
    poll = api.device("GET", f"/iclock/getrequest?SN={SN}")
    assert f"C:{command['id']}:REBOOT".encode() in poll.body
    assert api.get(f"/api/commands/{command['id']}")["status"] == "sent"


def test_typed_commands_are_built_from_the_body(api: Api) -> None:
    body = {"kind": "query_attlog", "start": "2024-01-01 00:00:00", "end": "2024-01-31 23:59:59"}
    reply = api.call("POST", f"/api/devices/{SN}/commands", body)
    assert reply.status == 201
    assert reply.json["kind"] == "query_attlog"
    assert reply.json["command"].startswith("DATA QUERY ATTLOG StartTime=2024-01-01")


def test_an_unknown_command_is_404(api: Api) -> None:
    reply = api.call("GET", "/api/commands/999")
    assert (reply.status, reply.json) == (404, {"error": "unknown command 999"})


@pytest.mark.parametrize(
    ("body", "status", "mentions"),
    [
        ({"kind": "warp"}, 400, "warp"),
        ({"command": 5}, 400, "command"),
        ({}, 400, "kind"),
        ({"command": "SHELL ls"}, 403, "--allow-commands"),
    ],
)
def test_command_service_refusals_keep_their_status_and_reason(
    api: Api, body: Dict[str, Any], status: int, mentions: str
) -> None:
    reply = api.call("POST", f"/api/devices/{SN}/commands", body)
    assert reply.status == status
    assert mentions in reply.json["error"]


def test_commands_are_listed_by_device_and_status(api: Api) -> None:
    api.handshake("OTHER")
    api.call("POST", f"/api/devices/{SN}/commands", {"command": "REBOOT"})
    api.call("POST", "/api/devices/OTHER/commands", {"kind": "reboot"})
    every = api.get("/api/commands")
    assert [c["sn"] for c in every["items"]] == [SN, "OTHER"] and every["next"] is None
    assert every["items"][0] == api.get(f"/api/commands/{every['items'][0]['id']}")
    first = api.get("/api/commands?limit=1")
    assert [c["sn"] for c in first["items"]] == [SN]
    second = api.get(f"/api/commands?limit=1&cursor={first['next']}")
    assert [c["sn"] for c in second["items"]] == ["OTHER"]
    assert [c["sn"] for c in api.get("/api/commands?sn=OTHER")["items"]] == ["OTHER"]
    assert len(api.get("/api/commands?status=pending")["items"]) == 2
    assert api.get("/api/commands?status=succeeded")["items"] == []
    reply = api.call("GET", "/api/commands?status=lost")
    assert reply.status == 400 and reply.json["error"].startswith("status must be one of pending")


# -- attendance ---------------------------------------------------------------------


def test_attendance_items_carry_utc_from_the_device_time_zone(api: Api) -> None:
    items = api.get("/api/attendance")["items"]
    first = items[0]
    assert set(first) == {
        "id",
        "sn",
        "pin",
        "time",
        "utc",
        "status",
        "verify",
        "workcode",
        "extra",
        "received",
    }
    assert (first["sn"], first["pin"], first["time"]) == (SN, "1", "2024-01-02T08:00:00")
    assert first["utc"] == "2024-01-02T00:00:00Z"  # the server's TimeZone=8
    assert first["extra"] == ["0", "0"]
    assert items[1]["workcode"] == "7" and items[1]["extra"] == []
    api.call("PATCH", f"/api/devices/{SN}", {"settings": {"TimeZone": "-5"}})
    assert api.get("/api/attendance")["items"][0]["utc"] == "2024-01-02T13:00:00Z"
    api.call("PATCH", f"/api/devices/{SN}", {"settings": {"TimeZone": 330}})
    assert api.get("/api/attendance")["items"][0]["utc"] == "2024-01-02T02:30:00Z"
    api.call("PATCH", f"/api/devices/{SN}", {"settings": {"TimeZone": "unknown"}})
    assert api.get("/api/attendance")["items"][0]["utc"] is None


def test_attendance_filters_by_device_pin_and_time(api: Api) -> None:
    api.handshake("OTHER")
    api.punch("OTHER", "1\t2024-01-03 08:00:00\t0\t1\t0")

    def pins(query: str) -> List[str]:
        return [
            f"{p['sn']}:{p['time'][11:16]}" for p in api.get(f"/api/attendance?{query}")["items"]
        ]

    assert pins("pin=1") == [f"{SN}:08:00", f"{SN}:17:00", "OTHER:08:00"]
    assert pins("sn=OTHER") == ["OTHER:08:00"]
    assert pins("since=2024-01-02T09:00:00&until=2024-01-02T17:00:00") == [
        f"{SN}:09:30",
        f"{SN}:17:00",
    ]
    assert pins("until=2024-01-02") == [f"{SN}:08:00", f"{SN}:09:30", f"{SN}:17:00"]
    assert pins("since=2024-01-03") == ["OTHER:08:00"]
    assert pins("since=" + quote("2024-01-02 17:00")) == [f"{SN}:17:00", "OTHER:08:00"]
    assert pins("sn=&pin=") == pins("")  # empty values are absent


def test_attendance_pages_follow_the_next_cursor(api: Api) -> None:
    first = api.get("/api/attendance?limit=2")
    assert [p["time"][11:16] for p in first["items"]] == ["08:00", "09:30"]
    assert first["next"] is not None
    second = api.get(f"/api/attendance?limit=2&cursor={first['next']}")
    assert [p["time"][11:16] for p in second["items"]] == ["17:00"]
    assert second["next"] is None
    assert len(api.get("/api/attendance")["items"]) == 3  # default limit: 100


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("limit=0", "limit must be a whole number from 1 to 10000, not '0'"),
        ("limit=10001", "limit must be a whole number from 1 to 10000, not '10001'"),
        ("limit=ten", "limit must be a whole number from 1 to 10000, not 'ten'"),
        ("cursor=abc", "invalid cursor: 'abc'"),
        (
            "since=yesterday",
            "since must be an ISO 8601 time (YYYY-MM-DDTHH:MM:SS), not 'yesterday'",
        ),
        (
            "until=2024-13-01",
            "until must be an ISO 8601 time (YYYY-MM-DDTHH:MM:SS), not '2024-13-01'",
        ),
    ],
)
@pytest.mark.parametrize("path", ["/api/attendance", "/api/attendance.csv", "/api/operations"])
def test_bad_limit_cursor_or_time_is_400_with_a_reason(
    api: Api, path: str, query: str, error: str
) -> None:
    if path == "/api/attendance.csv" and query.startswith("limit="):
        if query == "limit=10001":
            return  # the export has no maximum
        error = error.replace("from 1 to 10000", "of at least 1")
    reply = api.call("GET", f"{path}?{query}")
    assert (reply.status, reply.json) == (400, {"error": error})


def test_the_limit_may_be_ten_thousand(api: Api) -> None:
    assert len(api.get("/api/attendance?limit=10000")["items"]) == 3


def _csv(reply: Reply) -> List[List[str]]:
    assert reply.status == 200, reply.body
    assert reply.header("content-type") == b"text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(reply.body.decode("utf-8"))))


def test_attendance_csv_has_a_header_row_and_the_same_records(api: Api) -> None:
    rows = _csv(api.call("GET", "/api/attendance.csv"))
    assert rows[0] == [
        "id",
        "sn",
        "pin",
        "time",
        "utc",
        "status",
        "verify",
        "workcode",
        "extra",
        "received",
    ]
    assert len(rows) == 4
    items = api.get("/api/attendance")["items"]
    first = dict(zip(rows[0], rows[1]))
    assert first["id"] == str(items[0]["id"])
    assert (first["pin"], first["time"], first["utc"]) == (
        "1",
        "2024-01-02T08:00:00",
        items[0]["utc"],
    )
    assert first["extra"] == "0;0"
    assert [r[2] for r in _csv(api.call("GET", "/api/attendance.csv?pin=2"))[1:]] == ["2"]
    assert len(_csv(api.call("GET", "/api/attendance.csv?limit=2"))) == 3
    assert b"attendance.csv" in (
        api.call("GET", "/api/attendance.csv").header("content-disposition") or b""
    )


def test_attendance_csv_of_nothing_is_the_header_row(api: Api) -> None:
    assert len(_csv(api.call("GET", "/api/attendance.csv?sn=NONE"))) == 1


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.queries: List[RecordQuery] = []

    def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
        if kind == "attendance":
            self.queries.append(query)
        return super().query(kind, query)


def test_attendance_csv_reads_the_store_page_by_page(tmp_path: Any) -> None:
    store = CountingStore()
    api = Api(tmp_path, store=store)
    api.handshake(SN)
    punches = [
        AttLog(
            str(n % 50),
            f"2024-02-{1 + n // 1000:02d}T{n // 60 % 24:02d}:{n % 60:02d}:00",
            "0",
            "1",
            "0",
        )
        for n in range(2500)
    ]
    api.settle(store.ingest(SN, punches, None, "2024-03-01T00:00:00Z", None), api.treq)
    rows = _csv(api.call("GET", "/api/attendance.csv"))
    assert len(rows) == 2501
    assert len({r[0] for r in rows[1:]}) == 2500
    assert [q.limit for q in store.queries] == [1000, 1000, 1000]
    assert [q.cursor is None for q in store.queries] == [True, False, False]
    store.queries.clear()
    assert len(_csv(api.call("GET", "/api/attendance.csv?limit=1500"))) == 1501
    assert [q.limit for q in store.queries] == [1000, 500]


class FullTransport(StringTransport):
    """A transport whose send buffer is full after every write, until drained."""

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None:
            self.producer.pauseProducing()

    def writeSequence(self, data: Any) -> None:
        self.write(b"".join(data))


def test_attendance_csv_waits_while_the_client_does_not_read(tmp_path: Any) -> None:
    store = CountingStore()
    api = Api(tmp_path, store=store)
    api.handshake(SN)
    punches = [
        AttLog("1", f"2024-02-01T{n // 3600:02d}:{n // 60 % 60:02d}:{n % 60:02d}", "0", "1", "0")
        for n in range(3500)
    ]
    api.settle(store.ingest(SN, punches, None, "2024-03-01T00:00:00Z", None), api.treq)
    channel = Site(api.root).buildProtocol(None)
    transport = FullTransport()
    channel.makeConnection(transport)
    channel.dataReceived(
        b"GET /api/attendance.csv HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
    )
    for pages in (1, 2, 3):
        assert len(store.queries) == pages  # one page written, then it waits
        assert not transport.value().endswith(b"\r\n0\r\n\r\n")
        transport.producer.resumeProducing()  # the client read: the buffer drained
    assert len(store.queries) == 4
    body = transport.value()
    assert body.endswith(b"\r\n0\r\n\r\n")  # the last chunk: complete
    assert body.count(SN.encode()) == 3500
    channel.connectionLost(Failure(ConnectionDone()))


def test_attendance_csv_stops_reading_when_the_client_goes_away(tmp_path: Any) -> None:
    store = CountingStore()
    api = Api(tmp_path, store=store)
    api.handshake(SN)
    punches = [
        AttLog("1", f"2024-02-01T00:{n // 60:02d}:{n % 60:02d}", "0", "1", "0") for n in range(2500)
    ]
    api.settle(store.ingest(SN, punches, None, "2024-03-01T00:00:00Z", None), api.treq)
    channel = Site(api.root).buildProtocol(None)
    transport = FullTransport()
    channel.makeConnection(transport)
    channel.dataReceived(
        b"GET /api/attendance.csv HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n"
    )
    assert len(store.queries) == 1
    channel.connectionLost(Failure(ConnectionDone()))
    assert len(store.queries) == 1


def test_a_store_failure_in_the_middle_of_the_csv_cuts_the_response(tmp_path: Any) -> None:
    class FailingSecondPage(CountingStore):
        def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
            if kind == "attendance" and query.cursor is not None:
                return fail(StoreError("database is locked"))
            return super().query(kind, query)

    store = FailingSecondPage()
    api = Api(tmp_path, store=store)
    api.handshake(SN)
    punches = [
        AttLog("1", f"2024-02-01T00:{n // 60:02d}:{n % 60:02d}", "0", "1", "0") for n in range(1200)
    ]
    api.settle(store.ingest(SN, punches, None, "2024-03-01T00:00:00Z", None), api.treq)
    with pytest.raises(ResponseFailed):  # a broken body, not a CSV that looks complete
        api.call("GET", "/api/attendance.csv")


# -- operations, errors --------------------------------------------------------------


def test_operations_and_errors_are_listed_without_the_raw_lines(api: Api) -> None:
    api.upload(SN, "OPERLOG", b"OPLOG 4\t14\t2024-01-02 10:22:34\t0\t0\t0\t0")
    api.upload(
        SN,
        "ERRORLOG",
        b"ERRORLOG ErrCode=D01E0001\tErrMsg=\tDataOrigin=cmd\tCmdId=123\tAdditional=",
    )
    [op] = api.get(f"/api/operations?sn={SN}")["items"]
    assert (op["op_type"], op["op_who"], op["time"]) == ("4", "14", "2024-01-02T10:22:34")
    assert op["utc"] == "2024-01-02T02:22:34Z" and "raw" not in op
    assert api.get("/api/operations?since=2024-01-03")["items"] == []
    [error] = api.get("/api/errors")["items"]
    assert (error["sn"], error["err_code"], error["cmd_id"]) == (SN, "D01E0001", "123")
    assert "raw" not in error
    assert api.get("/api/errors?sn=OTHER") == {"items": [], "next": None}


# -- users ------------------------------------------------------------------------


FINGER = base64.b64encode(b"finger template").decode()


def test_users_are_created_read_and_listed_through_the_user_service(api: Api) -> None:
    body = {"name": "Ann", "privilege": 0, "fingerprints": [{"fid": 6, "template": FINGER}]}
    reply = api.call("PUT", "/api/users/42", body)
    assert reply.status == 200
    assert reply.json["user"]["name"] == "Ann"
    assert {c["sn"] for c in reply.json["commands"]} == {SN}  # to every approved device
    api.call("PUT", "/api/users/43", {"name": "Bob"})
    user = api.get("/api/users/42")
    assert (user["pin"], user["name"]) == ("42", "Ann")
    assert [(f["fid"], f["template"]) for f in user["fingerprints"]] == [("6", FINGER)]
    first = api.get("/api/users?limit=1")
    assert [u["pin"] for u in first["items"]] == ["42"] and first["next"] is not None
    second = api.get(f"/api/users?limit=1&cursor={first['next']}")
    assert [u["pin"] for u in second["items"]] == ["43"]


def test_users_are_deleted_here_and_on_the_devices(api: Api) -> None:
    api.call("PUT", "/api/users/42", {"name": "Ann"})
    reply = api.call("DELETE", f"/api/users/42?devices={SN}")
    assert reply.status == 200 and reply.json["deleted"] is True
    [command] = reply.json["commands"]
    assert (command["sn"], command["command"]) == (SN, "DATA DELETE USERINFO PIN=42")
    assert api.call("GET", "/api/users/42").status == 404
    # not on the server any more, but still removed from the devices
    again = api.call("DELETE", "/api/users/42")
    assert (again.status, again.json["deleted"], len(again.json["commands"])) == (200, False, 1)
    unknown = api.call("DELETE", "/api/users/42?devices=NOPE")
    assert unknown.status == 400 and "NOPE" in unknown.json["error"]


def test_an_unknown_user_is_404(tmp_path: Any) -> None:
    api = Api(tmp_path)  # no devices to delete it from either
    assert api.call("GET", "/api/users/9").json == {"error": "unknown user 9"}
    reply = api.call("DELETE", "/api/users/9")
    assert (reply.status, reply.json) == (404, {"error": "unknown user 9"})


@pytest.mark.parametrize(
    "body",
    [
        {"name": [5]},
        {"colour": "red"},
        {"fingerprints": [{"fid": 0, "template": "not base64!"}]},
        {"devices": "SN"},
    ],
)
def test_a_bad_user_body_is_400(api: Api, body: Dict[str, Any]) -> None:
    reply = api.call("PUT", "/api/users/42", body)
    assert reply.status == 400 and reply.json["error"]
    assert api.call("GET", "/api/users/42").status == 404


def test_a_user_body_that_is_not_json_is_400(api: Api) -> None:
    reply = api.call("PUT", "/api/users/42", b"not json")
    assert reply.status == 400 and reply.json["error"].startswith("invalid JSON body")


# -- photos ----------------------------------------------------------------------


def _upload_photos(api: Api) -> None:
    name = "20240102080000-1.jpg"
    body = f"PIN={name}\nSN={SN}\nsize={len(JPEG)}\nCMD=uploadphoto".encode() + b"\x00" + JPEG
    assert api.device("POST", f"/iclock/fdata?SN={SN}", body).status == 200
    content = base64.b64encode(JPEG).decode()
    line = f"BIOPHOTO PIN=1\tFileName=1.jpg\tType=9\tSize={len(content)}\tContent={content}"
    api.upload(SN, "BIOPHOTO", line.encode())


def test_photos_lists_attendance_and_comparison_photos(api: Api) -> None:
    _upload_photos(api)
    page = api.get("/api/photos")
    assert page["next"] is None
    att, bio = page["items"]
    assert (att["id"], att["type"], att["pin"], att["size"]) == (
        "att-1",
        "attendance",
        "1",
        len(JPEG),
    )
    assert (att["time"], att["utc"]) == ("2024-01-02T08:00:00", "2024-01-02T00:00:00Z")
    assert "path" not in att and att["url"] == "/api/photos/att-1"
    assert (bio["id"], bio["type"], bio["pin"], bio["bio_type"]) == (
        "bio-1",
        "comparison",
        "1",
        "9",
    )
    assert "content" not in bio
    assert [p["id"] for p in api.get("/api/photos?type=comparison")["items"]] == ["bio-1"]
    assert api.get("/api/photos?pin=2")["items"] == []
    assert api.call("GET", "/api/photos?type=video").status == 400


def test_photo_pages_run_from_attendance_to_comparison_photos(api: Api) -> None:
    _upload_photos(api)
    first = api.get("/api/photos?limit=1")
    assert [p["id"] for p in first["items"]] == ["att-1"]
    second = api.get(f"/api/photos?limit=1&cursor={first['next']}")
    assert [p["id"] for p in second["items"]] == ["bio-1"]
    assert second["next"] is None or api.get(f"/api/photos?cursor={second['next']}")["items"] == []
    reply = api.call("GET", "/api/photos?cursor=zzz")
    assert (reply.status, reply.json) == (400, {"error": "invalid cursor: 'zzz'"})


def test_a_photo_is_served_as_the_image_itself(api: Api) -> None:
    _upload_photos(api)
    for photo_id in ("att-1", "bio-1"):
        reply = api.call("GET", f"/api/photos/{photo_id}")
        assert reply.status == 200
        assert reply.header("content-type") == b"image/jpeg"
        assert reply.body == JPEG


@pytest.mark.parametrize("photo_id", ["att-2", "bio-9", "xyz-1", "att-x", "att"])
def test_an_unknown_photo_is_404(api: Api, photo_id: str) -> None:
    _upload_photos(api)
    reply = api.call("GET", f"/api/photos/{photo_id}")
    assert (reply.status, reply.json) == (404, {"error": f"unknown photo {photo_id}"})


def test_a_photo_whose_file_is_gone_is_404(api: Api, tmp_path: Any) -> None:
    _upload_photos(api)
    [photo] = api.settle(api.store.query("attphotos", RecordQuery()), api.treq).items
    os.unlink(os.path.join(str(tmp_path), photo["path"]))
    reply = api.call("GET", "/api/photos/att-1")
    assert (reply.status, reply.json) == (
        404,
        {"error": "the image file of photo att-1 is missing"},
    )


# -- failures --------------------------------------------------------------------


def test_a_store_outage_is_a_json_503(tmp_path: Any) -> None:
    class Down(MemoryStore):
        def query(self, kind: str, query: RecordQuery) -> Deferred[Page]:
            return fail(StoreError("database is locked"))

    api = Api(tmp_path, store=Down())
    reply = api.call("GET", "/api/attendance")
    assert (reply.status, reply.json) == (503, {"error": "database is locked"})


def test_an_unexpected_error_is_a_json_500_without_a_traceback(tmp_path: Any) -> None:
    class Broken(MemoryStore):
        def list_devices(self) -> Any:
            raise RuntimeError("secret internals")

    api = Api(tmp_path, store=Broken())
    reply = api.call("GET", "/api/devices")
    assert (reply.status, reply.json) == (500, {"error": "internal server error"})
    assert b"secret" not in reply.body


def test_head_is_answered_like_get_without_a_body(api: Api) -> None:
    reply = api.call("HEAD", "/api/health")
    assert (reply.status, reply.body) == (200, b"")
    reply = api.call("HEAD", "/api/attendance.csv")
    assert (reply.status, reply.body) == (200, b"")
    assert reply.header("content-type") == b"text/csv; charset=utf-8"


def test_a_trailing_slash_is_the_same_resource(api: Api) -> None:
    assert api.get("/api/devices/") == api.get("/api/devices")


def test_path_segments_are_url_decoded(api: Api) -> None:
    assert api.call("GET", "/api/users/a%20b").json == {"error": "unknown user a b"}
    assert api.call("GET", "/api/devices/X%2FY").json == {"error": "unknown device X/Y"}
