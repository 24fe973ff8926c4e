"""
Layer 4: the real server, listening on 127.0.0.1, driven over real HTTP by
treq and by ``pushd-sim``'s virtual devices; and ``twistd pushd`` itself.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, List, Tuple

import pytest
import pytest_twisted
import treq
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.web.iweb import UNKNOWN_LENGTH
from zope.interface import implementer

from pushd.config import Config, default_options
from pushd.model import RecordQuery
from pushd.service import PushdService, build_service
from pushd.sim import VirtualDevice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


async def start(
    tmp_path: Any, store_object: Any = None, **overrides: Any
) -> Tuple[PushdService, str]:
    values = {
        "listen": ("tcp:0:interface=127.0.0.1",),
        "data_dir": str(tmp_path),
        "registration": "open",
        "options": default_options(0),
        "api": "none",
    }
    values.update(overrides)
    service = build_service(Config(**values), reactor, store=store_object)
    service.startService()
    await service.ready
    [listener] = [s for s in service if isinstance(s, StreamServerEndpointService)]
    port = await listener._waitingForPort  # the listening port, once bound
    return service, f"http://127.0.0.1:{port.getHost().port}"


async def count(service: PushdService, kind: str, sn: Any = None) -> int:
    return await service.store.count(kind, sn)  # type: ignore[no-any-return]


@pytest_twisted.ensureDeferred
async def test_virtual_devices_upload_everything_over_http_and_it_is_stored_once(
    tmp_path: Any,
) -> None:
    service, url = await start(tmp_path)
    try:
        devices = [
            VirtualDevice(treq, reactor, url, f"LOOP{n:03d}", batch=40, timeout=30)
            for n in range(4)
        ]
        for device in devices:
            await device.handshake()
            await device.push_options()
            device.enroll(6)
            for _ in range(100):
                device.punch()
            await device.flush()
            await device.upload_photo()  # a new punch and its photo
            await device.upload_attlog()
            await device.poll()
            assert device.pending() == 0
        assert await count(service, "attendance") == 4 * 101
        assert await count(service, "attphotos") == 4
        assert await count(service, "users") == 6
        assert await count(service, "fingerprints") + await count(service, "biodata") == 9
        device = await service.store.get_device("LOOP000")
        assert device.firmware and device.options and device.hybrid
    finally:
        await service.stopService()


@implementer(__import__("twisted.web.iweb", fromlist=["IBodyProducer"]).IBodyProducer)
class _Chunks:
    """A body of unknown length, so the client sends it chunked."""

    length = UNKNOWN_LENGTH

    def __init__(self, pieces: List[bytes]) -> None:
        self._pieces = pieces

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        for piece in self._pieces:
            consumer.write(piece)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@pytest_twisted.ensureDeferred
async def test_chunked_request_body_is_read_whole(tmp_path: Any) -> None:
    service, url = await start(tmp_path)
    try:
        lines = [b"%d\t2021-03-04 05:06:%02d\t0\t1\t0\n" % (n, n % 60) for n in range(300)]
        response = await treq.post(
            f"{url}/iclock/cdata?SN=CHUNK1&table=ATTLOG&Stamp=1",
            _Chunks([b"".join(lines[i : i + 7]) for i in range(0, 300, 7)]),
        )
        assert (response.code, await response.content()) == (200, b"OK: 300")
        assert await count(service, "attendance", "CHUNK1") == 300
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_upload_bodies_are_never_read_as_forms_whatever_the_content_type(
    tmp_path: Any,
) -> None:
    # Twisted's own request would decode these bodies as forms: a malformed
    # multipart body would be a 400, and form fields would override SN= and table=.
    service, url = await start(tmp_path)
    punch = b"1\t2021-03-04 05:06:07\t0\t1\t0\n"
    try:
        for content_type, body in (
            (b"multipart/form-data; boundary=xyz", punch),
            (b"application/x-www-form-urlencoded", punch + b"SN=OTHER2&table=OPERLOG"),
        ):
            response = await treq.post(
                f"{url}/iclock/cdata?SN=FORM1&table=ATTLOG",
                punch if b"multipart" in content_type else body,
                headers={b"Content-Type": [content_type]},
            )
            assert response.code == 200, await response.content()
        assert await count(service, "attendance", "FORM1") == 1
        assert await service.store.get_device("OTHER2") is None
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_restart_keeps_data_stamps_and_last_seen(tmp_path: Any) -> None:
    service, url = await start(tmp_path)
    device = VirtualDevice(treq, reactor, url, "KEEP1", timeout=30)
    await device.handshake()
    device.punch()
    await device.upload_attlog()
    response = await treq.post(
        f"{url}/iclock/cdata?SN=KEEP1&table=OPERLOG&Stamp=77", b"OPLOG 0\t0\t2021-01-01 00:00:00\t0"
    )
    assert await response.content() == b"OK: 1"
    await treq.get(f"{url}/iclock/getrequest?SN=KEEP1")
    await service.stopService()

    service, url = await start(tmp_path)
    try:
        seen = await service.store.get_device("KEEP1")
        assert seen.last_seen and seen.ip == "127.0.0.1"
        response = await treq.get(f"{url}/iclock/cdata?SN=KEEP1&options=all")
        assert b"\nOPERLOGStamp=77\n" in await response.content()
        page = await service.store.query("attendance", RecordQuery(sn="KEEP1"))
        assert len(page.items) == 1
    finally:
        await service.stopService()


# -- twistd itself --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _twistd(*argv: str, cwd: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "pushd",
            *argv,
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest_twisted.ensureDeferred
async def test_twistd_runs_the_plugin_on_sqlite_and_stops_cleanly(tmp_path: Any) -> None:
    port = _free_port()
    api_port = _free_port()
    process = _twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--api",
        f"tcp:{api_port}:interface=127.0.0.1",
        "--allow",
        "TWISTD1",
        cwd=str(tmp_path),
    )
    try:
        url = f"http://127.0.0.1:{port}"
        reply = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = await treq.get(
                    f"{url}/iclock/cdata?SN=TWISTD1&options=all&pushcommkey=k3y5ecret", timeout=5
                )
                reply = await response.content()
                break
            except Exception:
                await deferLater(reactor, 0.2, lambda: None)
        assert reply.startswith(b"GET OPTION FROM: TWISTD1\n")
        refused = await treq.get(f"{url}/iclock/getrequest?SN=STRANGER", timeout=5)
        assert (refused.code, await refused.content()) == (401, b"Device not authorized")
        polled = await treq.get(f"{url}/iclock/getrequest?SN=TWISTD1", timeout=5)
        assert await polled.content() == b"OK"
        api = f"http://127.0.0.1:{api_port}/api"
        health = await treq.get(f"{api}/health", timeout=5)
        assert (await health.json())["store"] == "sqlite"
        token = (tmp_path / "pushd-data" / "api-token").read_text().strip()
        assert oct((tmp_path / "pushd-data" / "api-token").stat().st_mode & 0o777) == "0o600"
        devices = await treq.get(
            f"{api}/devices", headers={b"Authorization": [f"Bearer {token}".encode()]}, timeout=5
        )
        assert [d["sn"] for d in (await devices.json())["items"]] == ["STRANGER", "TWISTD1"]
        refused = await treq.get(f"{api}/devices", timeout=5)
        assert refused.code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    # twistd re-raises the signal it stopped on, so that its exit status tells it
    assert process.returncode == -signal.SIGTERM, output.decode()
    assert b"Server Shut Down." in output
    # the access log keeps handshakes and refusals, not routine polls
    assert b"GET /iclock/cdata?SN=TWISTD1&options=all&pushcommkey=<redacted> 200" in output
    assert b"k3y5ecret" not in output
    assert b"GET /iclock/getrequest?SN=STRANGER 401 21B" in output and b"(SN STRANGER)" in output
    assert b"getrequest?SN=TWISTD1" not in output
    assert os.path.exists(tmp_path / "pushd-data" / "pushd.sqlite3")
    assert b"Traceback" not in output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--registration", "sometimes"], b"--registration"),
        (["--listen", "tcp:port"], b"--listen"),
    ],
)
def test_twistd_refuses_invalid_options_naming_them(
    tmp_path: Any, argv: list, message: bytes
) -> None:
    process = _twistd(*argv, cwd=str(tmp_path))
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert message in output and b"Traceback" not in output


def test_twistd_exits_when_the_store_cannot_be_opened(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    port = _free_port()
    process = _twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--store",
        f"sqlite:{blocker}/db.sqlite3",
        cwd=str(tmp_path),
    )
    output, _ = process.communicate(timeout=60)
    assert process.returncode != 0
    assert b"pushd: cannot start:" in output and b"Traceback" not in output


def test_json_logs_are_one_object_per_event(tmp_path: Any) -> None:
    port = _free_port()
    process = _twistd(
        "--listen",
        f"tcp:{port}:interface=127.0.0.1",
        "--api",
        "none",
        "--log-format",
        "json",
        "--registration",
        "open",
        cwd=str(tmp_path),
    )
    try:
        deadline = time.monotonic() + 30
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                    sock.sendall(
                        b"GET /iclock/cdata?SN=JSON1&options=all HTTP/1.1\r\nHost: x\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    answered = sock.recv(100).startswith(b"HTTP/1.1 200")
            except OSError:
                time.sleep(0.2)
        assert answered
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    events = [json.loads(line) for line in output.decode().splitlines() if line.startswith("{")]
    [request] = [e for e in events if e.get("log_namespace") == "pushd.access"]
    assert (request["sn"], request["status"], request["method"]) == ("JSON1", 200, "GET")
    assert request["path"] == "/iclock/cdata?SN=JSON1&options=all" and "duration_ms" in request
