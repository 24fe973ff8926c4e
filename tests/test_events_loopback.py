"""
Layer 4: events survive a crash while their receiver is down: pushd under
twistd with a webhook sink, killed with SIGKILL before the receiver comes
up; once both run again, every event arrives, signed, exactly as stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Dict, List

import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from tests.test_loopback import ROOT, _free_port

SECRET = "hook-secret"


class Receiver(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.events: List[Dict[str, Any]] = []
        self.bad_signatures = 0

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read()
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if request.getHeader(b"x-pushd-signature") != expected.encode():
            self.bad_signatures += 1
            request.setResponseCode(401)
            return b"bad signature"
        self.events.extend(json.loads(body)["events"])
        return b"ok"


def start_pushd(tmp_path: Any, port: int, hook: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "pushd",
            "--listen",
            f"tcp:{port}:interface=127.0.0.1",
            "--api",
            "none",
            "--registration",
            "open",
            "--sink",
            f"http://127.0.0.1:{hook}/hook",
            "--sink-secret",
            SECRET,
        ],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def until(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await deferLater(reactor, 0.2, lambda: None)
    return False


@pytest_twisted.ensureDeferred
async def test_events_stored_before_a_crash_reach_the_receiver_afterwards(tmp_path: Any) -> None:
    port, hook = _free_port(), _free_port()
    url = f"http://127.0.0.1:{port}/iclock/cdata?SN=HOOK1&table=ATTLOG"
    body = b"".join(b"%d\t2026-11-24 08:00:%02d\t0\t1\t0\n" % (n, n) for n in range(5))
    first = start_pushd(tmp_path, port, hook)
    try:

        async def uploaded() -> bool:
            try:
                response = await treq.post(url, body, timeout=5)
                return await response.content() == b"OK: 5"
            except Exception:
                return False

        assert await until(uploaded, 30)
        await deferLater(reactor, 1.5, lambda: None)  # the sink tries, the receiver is down
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)

    receiver = Receiver()
    listening = reactor.listenTCP(hook, Site(receiver), interface="127.0.0.1")
    second = start_pushd(tmp_path, port, hook)
    try:

        async def arrived() -> bool:
            return len(receiver.events) >= 5

        assert await until(arrived, 60)
        punches = [e for e in receiver.events if e["type"] == "attendance"]
        assert sorted(e["data"]["pin"] for e in punches) == ["0", "1", "2", "3", "4"]
        assert len({e["id"] for e in punches}) == 5 and receiver.bad_signatures == 0
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
        await listening.stopListening()
