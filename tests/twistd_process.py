"""
``twistd -n pushd`` in a subprocess, for the tests that kill and restart real
servers (crashes, several nodes): start, wait until it serves, SIGKILL, stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sleep(seconds: float) -> defer.Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


class TwistdPushd:
    """One pushd process, its output appended to ``log`` (a banner per start)."""

    def __init__(
        self, name: str, workdir: Path, port: int, options: Sequence[str], log: Path
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.port = port
        self.options = list(options)
        self.log = log
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
        )
        argv = [
            *(sys.executable, "-c", "from twisted.scripts.twistd import run; run()"),
            *("-n", "--pidfile=", "pushd"),
            *("--listen", f"tcp:{self.port}:interface=127.0.0.1"),
            *self.options,
        ]
        with open(self.log, "ab") as log:
            log.write(b"\n==== start %d ====\n" % self.starts)
            log.flush()
            self.process = subprocess.Popen(
                argv,
                cwd=str(self.workdir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    async def wait_ready(self, client: HTTPClient) -> None:
        """Until a ping is answered ``200`` (it is ``503`` until the store is open)."""
        deadline = time.monotonic() + START_TIMEOUT
        url = f"{self.url}/iclock/ping?SN=READY"
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.tail()
            try:
                response = await client.get(url, timeout=2)
                await response.content()
                if response.code == 200:
                    return
            except Exception:
                pass
            await sleep(0.05)
        raise AssertionError(f"{self.name} did not answer within {START_TIMEOUT} s\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, no buffer is flushed by the server."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        assert self.process.returncode == -signal.SIGKILL, self.tail()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return ""
        return f"---- {self.name} ----\n" + "\n".join(text.splitlines()[-lines:])
