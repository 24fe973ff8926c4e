"""
Layer 4: the limits of the device listener, over real sockets: bodies over
the cap refused before they are buffered, too many records or too large a
photo refused, too many connections from one address answered 429, idle
connections closed, and 503 replies that tell the device when to retry.
"""

from __future__ import annotations

import socket
from typing import Any, Tuple

import pytest_twisted
import treq
from twisted.internet import threads
from twisted.internet.defer import Deferred, fail

from pushd.config import Limits
from pushd.errors import StoreError
from pushd.storage.memory import MemoryStore
from tests.test_loopback import start

LIMITS = Limits(
    max_body=4096, max_records=5, max_photo=1000, idle_timeout=1.0, connections_per_peer=3
)


def _exchange(port: int, data: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        if not read:
            return b""
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def raw(port: int, data: bytes) -> Deferred[bytes]:
    return threads.deferToThread(_exchange, port, data)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def limited(tmp_path: Any, **kw: Any) -> Tuple[Any, str]:
    return await start(tmp_path, limits=LIMITS, **kw)


@pytest_twisted.ensureDeferred
async def test_a_declared_body_over_the_cap_is_refused_unread(tmp_path: Any) -> None:
    service, url = await limited(tmp_path)
    try:
        head = (
            b"POST /iclock/cdata?SN=L1&table=ATTLOG HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nContent-Length: 100000\r\n\r\n"
        )
        body = (b"1\t2020-01-01 00:00:00\n" * 4546)[:100000]
        reply = await raw(port_of(url), head + body)
        assert reply.startswith(b"HTTP/1.1 413 ")
        assert reply.endswith(b"request body over 4096 bytes")
        assert await service.store.count("attendance", None) == 0
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_is_counted_and_cut_at_the_cap(tmp_path: Any) -> None:
    service, url = await limited(tmp_path)
    try:
        line = b"1\t2020-01-01 00:00:00\n"
        chunk = b"%x\r\n%s\r\n" % (len(line) * 50, line * 50)
        head = (
            b"POST /iclock/cdata?SN=L2&table=ATTLOG HTTP/1.1\r\nHost: x\r\n"
            b"Connection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        reply = await raw(port_of(url), head + chunk * 5 + b"0\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 413 ")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_too_many_records_or_too_large_a_photo_is_413(tmp_path: Any) -> None:
    service, url = await limited(tmp_path)
    try:
        body = b"".join(b"%d\t2020-01-01 00:00:00\n" % n for n in range(6))
        response = await treq.post(f"{url}/iclock/cdata?SN=L3&table=ATTLOG", body)
        assert (response.code, await response.content()) == (413, b"upload of over 5 records")
        photo = b"PIN=20200101000000-1.jpg\nSN=L3\nsize=2000\nCMD=uploadphoto\x00" + b"\xff" * 2000
        response = await treq.post(f"{url}/iclock/cdata?SN=L3&table=ATTPHOTO", photo)
        assert (response.code, await response.content()) == (413, b"photo over 1000 bytes")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_one_address_may_hold_only_so_many_connections(tmp_path: Any) -> None:
    service, url = await limited(tmp_path)
    held = []
    try:
        for _ in range(LIMITS.connections_per_peer):
            sock = socket.create_connection(("127.0.0.1", port_of(url)), timeout=10)
            held.append(sock)
        reply = await raw(port_of(url), b"GET /iclock/ping?SN=L4 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 429 ")
        assert reply.endswith(b"too many connections from your address")
        for sock in held:
            sock.close()
        held.clear()
        answered = None
        for _ in range(50):  # the server notices the closed connections
            answered = await raw(
                port_of(url),
                b"GET /iclock/ping?SN=L4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            if answered.startswith(b"HTTP/1.1 200"):
                break
        assert answered is not None and answered.startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_an_idle_connection_is_closed(tmp_path: Any) -> None:
    service, url = await limited(tmp_path)
    try:
        # a client that sends half a request and waits: the server hangs up
        reply = await raw(port_of(url), b"GET /iclock/ping?SN=L5 HTTP/1.1\r\nHost")
        assert reply == b"" or reply.startswith(b"HTTP/1.1 408")
    finally:
        await service.stopService()


class _Locked(MemoryStore):
    def ingest(self, *args: Any, **kw: Any) -> Any:
        return fail(StoreError("database is locked"))


@pytest_twisted.ensureDeferred
async def test_store_trouble_answers_503_with_retry_after_and_polls_still_work(
    tmp_path: Any,
) -> None:
    service, url = await start(tmp_path, store_object=_Locked())
    try:
        response = await treq.post(
            f"{url}/iclock/cdata?SN=L6&table=ATTLOG", b"1\t2020-01-01 00:00:00"
        )
        assert response.code == 503
        assert response.headers.getRawHeaders(b"retry-after") == [b"30"]
        poll = await treq.get(f"{url}/iclock/getrequest?SN=L6")
        assert (poll.code, await poll.content()) == (200, b"OK")
    finally:
        await service.stopService()
