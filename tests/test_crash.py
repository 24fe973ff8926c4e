"""
Crash safety: ``twistd pushd`` on SQLite, killed with SIGKILL at random
moments while virtual devices upload punches, and restarted on the same data
directory and port.

What must hold:

* every punch a device got ``OK`` for is in the database the moment the
  server is dead (it was committed before the answer went out);
* no punch is ever stored twice, although devices re-send everything that
  was in flight when the server died;
* once the devices have delivered what they kept (they retry until ``OK``),
  every punch they made is stored, once.

The randomness is seeded (``PUSHD_CRASH_SEED`` to try another seed); every
wait is bounded.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Set, Tuple

import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.web.client import Agent, HTTPConnectionPool

from pushd.sim import DeviceError, VirtualDevice
from tests.twistd_process import TwistdPushd, free_port, sleep

SEED = int(os.environ.get("PUSHD_CRASH_SEED", "20240611"))
DEVICES = 20
#: Punch times start here, one second apart per device: (SN, PIN, time) is unique.
BASE = datetime(2023, 5, 1, 8, 0, 0)
DRAIN_TIMEOUT = 30.0

Key = Tuple[str, str, str]  # (sn, pin, time as stored: 2023-05-01T08:00:00)


class Server(TwistdPushd):
    """``twistd -n pushd`` on SQLite in a subprocess, output appended to one log file."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.data = workdir / "data"
        options = [
            *("--registration", "open"),
            *("--api", "none"),
            *("--data-dir", str(self.data)),
        ]
        super().__init__("pushd", workdir, port, options, workdir / "pushd.log")

    @property
    def database(self) -> Path:
        return self.data / "pushd.sqlite3"

    def stored(self) -> Counter[Key]:
        """Every stored punch and how many times, read from the SQLite file, read-only."""
        if not self.database.exists():
            return Counter()
        connection = sqlite3.connect(self.database.as_uri() + "?mode=ro", uri=True, timeout=10)
        try:
            rows = connection.execute("SELECT sn, pin, time FROM attendance").fetchall()
        finally:
            connection.close()
        return Counter((str(sn), str(pin), str(when)) for sn, pin, when in rows)


class Fleet:
    """The virtual devices, and what each has recorded and had acknowledged."""

    def __init__(self, client: HTTPClient, url: str, rng: random.Random) -> None:
        self.rng = rng
        self.devices = [
            VirtualDevice(
                client,
                reactor,
                url,
                f"CRASH{number:03d}",
                rng=random.Random(rng.random()),
                error_delay=0.1,
                batch=rng.choice((5, 10, 25)),
                timeout=5,
            )
            for number in range(DEVICES)
        ]
        self.punching = True

    @staticmethod
    def key(device: VirtualDevice, index: int) -> Key:
        punch = device.state.attlogs[index]
        return (device.sn, punch.pin, punch.time.strftime("%Y-%m-%dT%H:%M:%S"))

    def recorded(self) -> Set[Key]:
        return {self.key(d, i) for d in self.devices for i in range(len(d.state.attlogs))}

    def acknowledged(self) -> Set[Key]:
        """
        The punches the server answered ``OK`` for: a device sends its buffer
        in order and drops records from its front only on ``OK``, so they
        are the ones before what is still pending.
        """
        keys: Set[Key] = set()
        for device in self.devices:
            done = len(device.state.attlogs) - device.pending("ATTLOG")
            keys.update(self.key(device, i) for i in range(done))
        return keys

    async def live(self, device: VirtualDevice) -> None:
        """Punch a few, upload, repeat; on any failure wait a little and retry."""
        rng = random.Random(self.rng.random())
        made = 0
        while self.punching:
            try:
                if device.needs_handshake:
                    await device.handshake()
                for _ in range(rng.randint(1, 12)):
                    device.punch(pin=str(1 + made % 37), when=BASE + timedelta(seconds=made))
                    made += 1
                await device.upload_attlog()
            except DeviceError:
                await sleep(rng.uniform(0.05, 0.3))
            else:
                await sleep(rng.uniform(0.0, 0.05))

    async def drain(self) -> None:
        """Deliver what is still buffered, retrying, within :data:`DRAIN_TIMEOUT`."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for device in self.devices:
            while device.pending() and time.monotonic() < deadline:
                try:
                    await device.flush()
                except DeviceError:
                    await sleep(0.1)


def _duplicates(stored: Counter[Key]) -> Dict[Key, int]:
    return {key: n for key, n in stored.items() if n > 1}


@pytest_twisted.ensureDeferred
async def test_sigkill_loses_no_acknowledged_punch_and_stores_none_twice(tmp_path: Any) -> None:
    rng = random.Random(SEED)
    kills = rng.randint(3, 5)
    started = time.monotonic()
    server = Server(tmp_path, free_port())
    pool = HTTPConnectionPool(reactor, persistent=False)  # one connection a request, like devices
    client = HTTPClient(Agent(reactor, connectTimeout=5, pool=pool))
    url = f"http://127.0.0.1:{server.port}"
    fleet = Fleet(client, url, rng)
    workers: List[defer.Deferred[None]] = []
    checked: List[int] = []
    unanswered: List[int] = []
    try:
        server.start()
        await server.wait_ready(client)
        workers = [defer.Deferred.fromCoroutine(fleet.live(d)) for d in fleet.devices]
        for crash in range(kills):
            await sleep(rng.uniform(0.4, 2.0))
            server.kill()
            acknowledged = fleet.acknowledged()
            stored = server.stored()
            missing = acknowledged - set(stored)
            assert not missing, (
                f"seed {SEED}, crash {crash}: {len(missing)} acknowledged punches lost, "
                f"e.g. {sorted(missing)[:5]}"
            )
            assert not _duplicates(stored), f"seed {SEED}, crash {crash}: stored twice"
            checked.append(len(acknowledged))
            # committed but not answered in time: the devices will send these again
            unanswered.append(len(set(stored) - acknowledged))
            await sleep(rng.uniform(0.0, 0.5))  # the devices meet a closed port meanwhile
            server.start()
            await server.wait_ready(client)
        await sleep(rng.uniform(0.2, 0.8))
        fleet.punching = False
        await defer.gatherResults(workers, consumeErrors=True)
        await fleet.drain()
        pending = sum(d.pending() for d in fleet.devices)
        assert pending == 0, f"seed {SEED}: {pending} punches still undelivered after the drain"
        acknowledged = fleet.acknowledged()
        recorded = fleet.recorded()
        server.stop()
        stored = server.stored()
    finally:
        fleet.punching = False
        server.stop()
        await pool.closeCachedConnections()

    assert acknowledged == recorded
    assert not _duplicates(stored), f"seed {SEED}: {len(_duplicates(stored))} punches stored twice"
    assert set(stored) == recorded, (
        f"seed {SEED}: {len(recorded - set(stored))} missing, "
        f"{len(set(stored) - recorded)} unexpected"
    )
    # the crashes did happen while punches were being acknowledged
    assert server.starts == kills + 1 and checked == sorted(checked) and checked[-1] > 0
    assert sum(d.stats.failures for d in fleet.devices) > 0  # devices did meet the dead server
    print(
        f"seed {SEED}: {kills} SIGKILLs, acknowledged at each {checked}, "
        f"committed but unanswered at each {unanswered}, {len(recorded)} punches stored once, "
        f"{sum(d.stats.failures for d in fleet.devices)} failed requests retried"
    )
    log = server.log.read_text("utf-8", "replace")
    assert "Traceback" not in log and "Unexpected error" not in log, server.tail(60)
    assert time.monotonic() - started < 60
