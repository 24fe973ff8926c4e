"""
Several nodes: two ``twistd pushd`` processes on 127.0.0.1, each on a port of
its own, sharing one PostgreSQL store (a schema made for the test and dropped
afterwards), with virtual devices whose every request goes to either node at
random, as behind a load balancer without affinity.

What must hold:

* every punch is stored exactly once, whichever nodes its upload and its
  retries reached;
* every command queued through the REST API of one node is delivered once,
  executed once and completed (``succeeded``), whichever node the device
  polled and whichever node its reply reached;
* each device's ``ATTLOG`` stamp is the last one it sent, and both nodes say so;
* when one node is killed (SIGKILL) mid-run, the devices keep what it did not
  acknowledge and deliver it through the other: every punch they were told
  was stored is stored, and nothing is stored twice.

PostgreSQL is ``PUSHD_TEST_PG_URL`` (trust auth); without it the tests are
skipped, unless ``PUSHD_TEST_PG_REQUIRED`` (or ``CI``) is set: then they fail.
The randomness is seeded (``PUSHD_MULTINODE_SEED`` to try another seed);
every wait is bounded.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest
import pytest_twisted
from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from pushd.sim import DeviceError, Reply, VirtualDevice
from tests.test_storage_contract import PG_URL, _pg_execute, _require_pg
from tests.twistd_process import TwistdPushd, free_port, sleep

SEED = int(os.environ.get("PUSHD_MULTINODE_SEED", "20240707"))
DEVICES = 6
PUNCHES = 300  # by the first device; each next one makes 11 fewer (their last stamps differ)
COMMANDS = 8  # per device, in the first test
#: Punch times start here, one second apart per device: (SN, PIN, time) is unique.
BASE = datetime(2023, 6, 1, 7, 0, 0)
RUN_TIMEOUT = 40.0
#: Seconds a device keeps away from a node it could not reach.
AVOID = 1.0
TOKEN = "multinode-" + secrets.token_hex(8)

Key = Tuple[str, str, str]  # (sn, pin, time as stored: 2023-06-01T07:00:00)


# -- PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Any:
    """A fresh, empty PostgreSQL schema, dropped with everything in it afterwards."""
    _require_pg()
    name = f"pushd_test_{secrets.token_hex(6)}"
    _pg_execute(f"CREATE SCHEMA {name}")
    try:
        yield name
    finally:
        _pg_execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def _store_url(schema: str) -> str:
    """PG_URL with the schema first in the search path (libpq ``options``)."""
    return PG_URL + ("&" if "?" in PG_URL else "?") + f"options=-csearch_path%3D{schema}"


def _stored(schema: str) -> Counter[Key]:
    """Every stored punch of the test's devices, and how many times."""
    rows = _pg_execute(
        f"SELECT sn, pin, time FROM {schema}.attendance WHERE sn LIKE %s", ("MULTI%",)
    )
    return Counter((str(sn), str(pin), str(when)) for sn, pin, when in rows)


def _stamps(schema: str) -> Dict[str, str]:
    """Each test device's ATTLOG stamp as its row in ``devices`` holds it."""
    rows = _pg_execute(f"SELECT sn, stamps FROM {schema}.devices WHERE sn LIKE %s", ("MULTI%",))
    return {str(sn): str(json.loads(stamps).get("ATTLOG", "")) for sn, stamps in rows}


# -- checks ---------------------------------------------------------------------


def _duplicates(stored: Counter[Key]) -> Dict[Key, int]:
    return {key: n for key, n in stored.items() if n > 1}


def _problems(stored: Counter[Key], expected: Set[Key], must_have: Set[Key]) -> List[str]:
    """
    What is wrong with the punches stored: any stored twice, any ``must_have``
    missing, any stored that is not ``expected``.
    """
    problems = []
    twice = _duplicates(stored)
    if twice:
        problems.append(f"{len(twice)} stored more than once, e.g. {sorted(twice)[:3]}")
    missing = must_have - set(stored)
    if missing:
        problems.append(f"{len(missing)} missing, e.g. {sorted(missing)[:3]}")
    unexpected = set(stored) - expected
    if unexpected:
        problems.append(f"{len(unexpected)} never made, e.g. {sorted(unexpected)[:3]}")
    return problems


def test_the_checks_see_a_punch_stored_twice_missing_or_made_up() -> None:
    a, b, c = (("MULTI0", "1", f"2023-06-01T07:00:0{n}") for n in range(3))
    assert _problems(Counter([a, b]), {a, b}, {a, b}) == []
    assert _problems(Counter([a, b]), {a, b, c}, {a, b}) == []  # c was never acknowledged
    [twice] = _problems(Counter([a, b, b]), {a, b}, {a, b})
    assert twice.startswith("1 stored more than once")
    [missing] = _problems(Counter([a]), {a, b}, {a, b})
    assert missing.startswith("1 missing")
    [made_up] = _problems(Counter([a, b, c]), {a, b}, {a, b})
    assert made_up.startswith("1 never made")


# -- the nodes ----------------------------------------------------------------


class Node(TwistdPushd):
    """``twistd -n pushd`` on the shared store, in a subprocess, output in a log file."""

    def __init__(self, name: str, workdir: Path, store: str, api: bool) -> None:
        self.api_port = free_port() if api else None
        options = [
            *("--registration", "open"),
            *("--store", store),
            *("--api", f"tcp:{self.api_port}:interface=127.0.0.1" if self.api_port else "none"),
            *("--api-token", TOKEN),
            *("--data-dir", str(workdir / "data")),  # shared: photos, files
        ]
        super().__init__(name, workdir, free_port(), options, workdir / f"{name}.log")

    @property
    def api(self) -> str:
        assert self.api_port is not None
        return f"http://127.0.0.1:{self.api_port}/api"


# -- the devices --------------------------------------------------------------


class Roaming:
    """
    A treq ``HTTPClient`` in front of the nodes: each request goes to one of
    them chosen at random, whatever base URL the device was given.  When a
    device cannot reach a node, its requests go to the others for
    :data:`AVOID` seconds (a load balancer's health check), then again to
    any: so a device whose request failed retries on the other node.

    It also makes the devices send real ``ATTLOG`` stamps (the simulator sends
    9999 every time): the record index of the last line of the upload, which
    grows with every upload of a device and is the same when a failed upload
    goes again.
    """

    def __init__(self, client: HTTPClient, nodes: Sequence[Node], rng: random.Random) -> None:
        self.client = client
        self.nodes = list(nodes)
        self.rng = rng
        self.placeholder = "http://nodes.invalid"
        self.sent: Counter[str] = Counter()  # requests per node
        self.last_stamp: Dict[str, str] = {}  # by SN: the stamp of its last ATTLOG upload
        #: (SN, node) -> until when that device sends elsewhere, after it could not connect
        self.avoid: Dict[Tuple[str, str], float] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        assert url.startswith(self.placeholder + "/"), url
        rest = url[len(self.placeholder) :]
        sn = rest.split("SN=", 1)[1].split("&", 1)[0]
        now = time.monotonic()
        usable = [n for n in self.nodes if self.avoid.get((sn, n.name), 0.0) <= now]
        node = self.rng.choice(usable or self.nodes)
        self.sent[node.name] += 1
        if method == "POST" and "table=ATTLOG&" in rest and "&Stamp=9999" in rest:
            lines = bytes(kwargs["data"]).rstrip(b"\n").split(b"\n")
            stamp = lines[-1].split(b"\t")[-1].decode("ascii")
            rest = rest.replace("&Stamp=9999", f"&Stamp={stamp}")
            self.last_stamp[sn] = stamp
        request = self.client.request(method, node.url + rest, **kwargs)
        request.addErrback(self._unreachable, sn, node)
        return request

    def _unreachable(self, reason: Failure, sn: str, node: Node) -> Failure:
        self.avoid[sn, node.name] = time.monotonic() + AVOID
        return reason


class Device(VirtualDevice):
    """A virtual device that counts the commands it executes, by id."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executed: Counter[str] = Counter()

    async def execute(self, command_id: str, command: str) -> Reply:
        self.executed[command_id] += 1
        return await super().execute(command_id, command)


class Fleet:
    """The devices, and what each has recorded and had acknowledged."""

    def __init__(self, roaming: Roaming, rng: random.Random, punches: int) -> None:
        self.rng = rng
        self.devices = [
            Device(
                roaming,
                reactor,
                roaming.placeholder,
                f"MULTI{number:02d}",
                rng=random.Random(rng.random()),
                error_delay=0.1,
                batch=rng.choice((7, 10, 25)),
                timeout=5,
            )
            for number in range(DEVICES)
        ]
        #: Punches each device makes, by SN.
        self.target = {d.sn: punches - 11 * number for number, d in enumerate(self.devices)}
        self.total = sum(self.target.values())
        #: Commands queued for each device, by SN; None until queueing is over.
        self.queued: Optional[Dict[str, List[str]]] = None
        self.stopped = False

    @staticmethod
    def key(device: VirtualDevice, index: int) -> Key:
        punch = device.state.attlogs[index]
        return (device.sn, punch.pin, punch.time.strftime("%Y-%m-%dT%H:%M:%S"))

    def recorded(self) -> Set[Key]:
        return {self.key(d, i) for d in self.devices for i in range(len(d.state.attlogs))}

    def acknowledged(self) -> Set[Key]:
        """
        The punches the server answered ``OK`` for: a device sends its buffer
        in order and drops records from its front only on ``OK``.
        """
        keys = set()
        for device in self.devices:
            done = len(device.state.attlogs) - device.pending("ATTLOG")
            keys.update(self.key(device, i) for i in range(done))
        return keys

    def done(self, device: Device, polled: bool) -> bool:
        made = len(device.state.attlogs)
        if made < self.target[device.sn] or device.pending() or not polled:
            return False
        if self.queued is None:
            return False  # commands may still come
        return len(device.executed) >= len(self.queued[device.sn])

    async def live(self, device: Device) -> None:
        """Handshake, punch a few, upload, poll, repeat; after a failure wait and retry."""
        rng = random.Random(self.rng.random())
        deadline = time.monotonic() + RUN_TIMEOUT
        polled = False
        while not self.stopped and time.monotonic() < deadline:
            try:
                if device.needs_handshake:
                    await device.handshake()
                made = len(device.state.attlogs)
                last = min(self.target[device.sn], made + rng.randint(1, 15))
                for n in range(made, last):
                    device.punch(pin=str(1 + n % 37), when=BASE + timedelta(seconds=n))
                await device.upload_attlog()
                polled = False
                await device.poll()  # replies to earlier polls go too
                polled = True
            except DeviceError:
                await sleep(rng.uniform(0.05, 0.2))
                continue
            if self.done(device, polled):
                return
            await sleep(rng.uniform(0.0, 0.03))


async def _start_nodes(tmp_path: Path, schema: str, client: HTTPClient) -> Tuple[Node, Node]:
    store = _store_url(schema)
    a = Node("node-a", tmp_path, store, api=True)
    b = Node("node-b", tmp_path, store, api=False)
    # one after the other: the first applies the schema (both at once is tested elsewhere)
    a.start()
    await a.wait_ready(client)
    b.start()
    await b.wait_ready(client)
    return a, b


def _logs_clean(nodes: Sequence[Node]) -> None:
    for node in nodes:
        log = node.log.read_text("utf-8", "replace")
        assert "Traceback" not in log and "Unexpected error" not in log, node.tail(60)


# -- the tests ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_devices_roaming_between_two_nodes_store_each_punch_and_run_each_command_once(
    tmp_path: Path, pg_schema: str
) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    pool = HTTPConnectionPool(reactor, persistent=False)  # one connection a request
    client = HTTPClient(Agent(reactor, connectTimeout=5, pool=pool))
    nodes: List[Node] = []
    fleet: Optional[Fleet] = None
    try:
        nodes = list(await _start_nodes(tmp_path, pg_schema, client))
        up = time.monotonic() - started
        a = nodes[0]  # the node with the REST API
        roaming = Roaming(client, nodes, random.Random(rng.random()))
        fleet = Fleet(roaming, rng, PUNCHES)
        for device in fleet.devices:  # known to the store before commands are queued for it
            while device.needs_handshake:
                await device.handshake()
        workers = [defer.Deferred.fromCoroutine(fleet.live(d)) for d in fleet.devices]
        headers = {
            b"Authorization": [f"Bearer {TOKEN}".encode()],
            b"Content-Type": [b"application/json"],
        }
        queued: Dict[str, List[str]] = {d.sn: [] for d in fleet.devices}
        for number in range(COMMANDS):
            await sleep(rng.uniform(0.05, 0.3))  # while the devices upload and poll
            for device in fleet.devices:
                pin = str(1000 + number)
                body = {"command": f"DATA UPDATE USERINFO PIN={pin}\tName=Queued {number}"}
                response = await client.post(
                    f"{a.api}/devices/{device.sn}/commands",
                    json.dumps(body).encode(),
                    headers=headers,
                    timeout=10,
                )
                created = json.loads(await response.content())
                assert response.code == 201, created
                queued[device.sn].append(created["id"])
        fleet.queued = queued
        await defer.gatherResults(workers, consumeErrors=True)

        # both nodes tell each device the stamp it last sent
        for node in nodes:
            for device in fleet.devices:
                response = await client.get(
                    f"{node.url}/iclock/cdata?SN={device.sn}&options=all", timeout=10
                )
                reply = (await response.content()).decode()
                assert f"\nATTLOGStamp={roaming.last_stamp[device.sn]}\n" in reply, (
                    node.name,
                    device.sn,
                    reply,
                )
        commands = []
        for device in fleet.devices:
            response = await client.get(
                f"{a.api}/commands?sn={device.sn}&limit=100", headers=headers, timeout=10
            )
            page = json.loads(await response.content())
            assert response.code == 200 and page["next"] is None, page
            commands.extend(page["items"])
    finally:
        if fleet is not None:
            fleet.stopped = True
        for node in nodes:
            node.stop()
        await pool.closeCachedConnections()

    assert fleet is not None
    recorded = fleet.recorded()
    assert len(recorded) == fleet.total
    pending = sum(d.pending() for d in fleet.devices)
    assert pending == 0, f"seed {SEED}: {pending} punches never acknowledged"
    assert _problems(_stored(pg_schema), recorded, recorded) == [], f"seed {SEED}"

    # every command delivered once, executed once, and completed
    every = {command_id for ids in queued.values() for command_id in ids}
    assert len(every) == DEVICES * COMMANDS
    for device in fleet.devices:
        assert device.executed == Counter(queued[device.sn]), (device.sn, device.executed)
        pins = {str(1000 + number) for number in range(COMMANDS)}
        assert pins <= set(device.state.users), device.sn
    assert {c["id"] for c in commands} == every
    wrong = [c for c in commands if c["status"] != "succeeded" or c["attempts"] != 1]
    assert not wrong, wrong[:3]

    # the device rows keep the last stamp each device sent
    assert _stamps(pg_schema) == roaming.last_stamp

    # the devices did roam: both nodes served a good share of the requests
    assert min(roaming.sent.values()) > 0.3 * sum(roaming.sent.values()), roaming.sent
    _logs_clean(nodes)
    print(
        f"seed {SEED}: {len(recorded)} punches stored once, {len(every)} commands run once, "
        f"requests per node {dict(roaming.sent)}, "
        f"{time.monotonic() - started:.1f} s ({up:.1f} s starting the nodes)"
    )
    assert time.monotonic() - started < 60


@pytest_twisted.ensureDeferred
async def test_sigkill_of_one_node_loses_no_acknowledged_punch_and_stores_none_twice(
    tmp_path: Path, pg_schema: str
) -> None:
    rng = random.Random(SEED + 1)
    started = time.monotonic()
    pool = HTTPConnectionPool(reactor, persistent=False)
    client = HTTPClient(Agent(reactor, connectTimeout=5, pool=pool))
    nodes: List[Node] = []
    fleet: Optional[Fleet] = None
    try:
        nodes = list(await _start_nodes(tmp_path, pg_schema, client))
        up = time.monotonic() - started
        roaming = Roaming(client, nodes, random.Random(rng.random()))
        fleet = Fleet(roaming, rng, PUNCHES)
        fleet.queued = {d.sn: [] for d in fleet.devices}  # no commands here
        workers = [defer.Deferred.fromCoroutine(fleet.live(d)) for d in fleet.devices]
        victim, survivor = rng.sample(nodes, 2)
        # mid-run: some punches acknowledged, many still to make
        while len(fleet.acknowledged()) < fleet.total // 3:
            assert time.monotonic() - started < RUN_TIMEOUT, "the devices made no progress"
            await sleep(0.02)
        await sleep(rng.uniform(0.0, 0.2))
        failures_before = sum(d.stats.failures for d in fleet.devices)
        victim.kill()
        acknowledged = fleet.acknowledged()
        stored = _stored(pg_schema)
        # committed before OK went out; a request in flight may have been committed unanswered
        at_kill = _problems(stored, fleet.recorded(), acknowledged)
        assert at_kill == [], f"seed {SEED}, at the kill: {at_kill}"
        assert 0 < len(acknowledged) < fleet.total
        # the devices keep meeting the dead node half of the time, and go on
        await defer.gatherResults(workers, consumeErrors=True)
        failures = sum(d.stats.failures for d in fleet.devices) - failures_before
    finally:
        if fleet is not None:
            fleet.stopped = True
        for node in nodes:
            node.stop()
        await pool.closeCachedConnections()

    assert fleet is not None
    recorded = fleet.recorded()
    pending = sum(d.pending() for d in fleet.devices)
    assert pending == 0, f"seed {SEED}: {pending} punches still undelivered"
    assert len(recorded) == fleet.total
    assert fleet.acknowledged() == recorded
    assert _problems(_stored(pg_schema), recorded, recorded) == [], f"seed {SEED}"
    assert _stamps(pg_schema) == roaming.last_stamp
    assert failures > 0  # the devices did meet the dead node, and retried elsewhere
    _logs_clean([survivor])
    print(
        f"seed {SEED}: killed {victim.name} with {len(acknowledged)} punches acknowledged, "
        f"{failures} failed requests retried, {len(recorded)} punches stored once, "
        f"{time.monotonic() - started:.1f} s ({up:.1f} s starting the nodes)"
    )
    assert time.monotonic() - started < 60
