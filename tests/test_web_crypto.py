"""
Layer 2: the encryption layer through the device endpoints: negotiation in
the options reply, the exchange, encrypted uploads going the same way as
plain ones, and the refusals crypto.md specifies.  The device side is
pushd.sim_zkx1, an implementation written apart from the server's.
"""

from __future__ import annotations

import base64
from typing import Any, Dict

import pytest
from twisted.internet.defer import Deferred

from pushd.model import DeviceUpdate
from pushd.sim_zkx1 import ZKX1Client, generate_device_key
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer
from tests.test_web_iclock import handshake, items, make_server, send, settle

SN = "ZK0000000001"
PUNCHES = b"1452\t2015-07-30 15:16:28\t0\t1\t0\t0\t0\n1452\t2015-07-30 15:16:29\t0\t1\t0\t0\t0"


@pytest.fixture(scope="module")
def device_key() -> Any:
    return generate_device_key(2048)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: Any) -> Any:
    # one server key (RSA-3072, generated on first use) for the whole module
    return tmp_path_factory.mktemp("zkx1")


def zkx1_server(data_dir: Any, store: Any = None) -> TestServer:
    server = make_server(data_dir, store=store or MemoryStore())
    handshake(server, SN)
    settle(server, server.app.registry.update(SN, DeviceUpdate(crypto="zkx1")))
    return server


def options(server: TestServer) -> Dict[str, str]:
    body = handshake(server, SN).body.decode()
    return dict(line.split("=", 1) for line in body.split("\n")[1:])


def exchange(server: TestServer, client: ZKX1Client) -> None:
    reply = send(
        server, "POST", f"/iclock/exchange?SN={SN}&type=publickey", client.publickey_request()
    )
    assert reply.status == 200, reply.body
    assert reply.header("content-type") == b"application/push;charset=UTF-8"
    client.publickey_reply(reply.body)
    reply = send(server, "POST", f"/iclock/exchange?SN={SN}&type=factors", client.factors_request())
    assert reply.status == 200, reply.body
    client.factors_reply(reply.body)


def upload(server: TestServer, body: bytes) -> Any:
    return send(server, "POST", f"/iclock/cdata?SN={SN}&table=ATTLOG&Stamp=1", body)


def test_plain_devices_get_encrypt_0_and_404_for_the_exchange(server: TestServer) -> None:
    handshake(server, "PLAIN1")
    assert b"\nEncrypt=0\n" in handshake(server, "PLAIN1").body
    reply = send(server, "POST", "/iclock/exchange?SN=PLAIN1&type=publickey", b"PublicKey=AAAA")
    assert (reply.status, reply.body) == (404, b"Not Supported")


def test_zkx1_is_negotiated_in_the_options_reply(data_dir: Any) -> None:
    values = options(zkx1_server(data_dir))
    assert (values["Encrypt"], values["EncryptFlag"], values["EncryptProfile"]) == (
        "1",
        "1000000000",
        "ZKX1",
    )
    assert values["PushProtVer"] == "2.4.1"


def test_an_encrypted_upload_is_stored_like_a_plain_one_and_once(
    data_dir: Any, device_key: Any
) -> None:
    server = zkx1_server(data_dir)
    fingerprint = settle(server, server.app.sessions.fingerprint())
    client = ZKX1Client(SN, device_key, server_fingerprint=fingerprint)
    exchange(server, client)
    sealed = client.seal(PUNCHES)
    assert sealed.startswith(b"WktYMQ")
    assert upload(server, sealed).body == b"OK: 2"
    assert upload(server, sealed).body == b"OK: 2"  # the exact replay: the cached answer
    again = client.seal(PUNCHES)  # re-sent data under a new sequence number
    assert upload(server, again).body == b"OK: 2"
    assert [p["pin"] for p in items(server, "attendance")] == ["1452", "1452"]


def test_tampered_replayed_and_sessionless_uploads_are_refused(
    data_dir: Any, device_key: Any
) -> None:
    server = zkx1_server(data_dir)
    client = ZKX1Client(SN, device_key)
    exchange(server, client)
    first = client.seal(PUNCHES)
    second = client.seal(PUNCHES)
    raw = bytearray(base64.b64decode(second))
    raw[20] ^= 1
    tampered = upload(server, base64.b64encode(bytes(raw)))
    assert (tampered.status, tampered.body) == (400, b"ERROR ZKX1 BADTAG")
    assert upload(server, second).body == b"OK: 2"
    late = upload(server, first)  # an older sequence number, never answered
    assert (late.status, late.body) == (409, b"ERROR ZKX1 REPLAY")
    plain = upload(server, PUNCHES)
    assert plain.status == 400 and plain.body.startswith(b"ERROR ZKX1")
    options(server)  # a new handshake discards the session
    stale = upload(server, client.seal(PUNCHES))
    assert (stale.status, stale.body) == (401, b"ERROR ZKX1 NOSESSION")
    assert len(items(server, "attendance")) == 2


def test_factors_before_publickey_is_out_of_order(data_dir: Any, device_key: Any) -> None:
    server = zkx1_server(data_dir)
    client = ZKX1Client(SN, device_key)
    send(server, "POST", f"/iclock/exchange?SN={SN}&type=publickey", client.publickey_request())
    options(server)
    reply = send(server, "POST", f"/iclock/exchange?SN={SN}&type=factors", b"Factors=AAAA")
    assert reply.status == 409


def test_a_session_survives_a_restart_through_the_store(data_dir: Any, device_key: Any) -> None:
    store = MemoryStore()
    first = zkx1_server(data_dir, store)
    client = ZKX1Client(SN, device_key)
    exchange(first, client)
    second = make_server(data_dir, store=store)  # another process on the same store
    assert upload(second, client.seal(PUNCHES)).body == b"OK: 2"


def test_an_operator_pushcommkey_is_required_and_never_logged(
    server: TestServer, capsys: Any
) -> None:
    handshake(server, "KEYED1")
    settle(server, server.app.registry.update("KEYED1", DeviceUpdate(pushcommkey="s3cr3tkey")))
    base = "/iclock/cdata?SN=KEYED1&options=all"
    assert send(server, "GET", base).status == 401
    assert send(server, "GET", base + "&pushcommkey=wrong").status == 401
    assert send(server, "GET", base + "&pushcommkey=s3cr3tkey").status == 200
    assert "s3cr3tkey" not in capsys.readouterr().err


def test_the_virtual_device_speaks_zkx1_with_its_own_client(data_dir: Any, device_key: Any) -> None:
    from pushd.sim import VirtualDevice

    server = zkx1_server(data_dir)
    fingerprint = settle(server, server.app.sessions.fingerprint())
    device = VirtualDevice(
        server.treq,
        server.reactor,
        "http://192.168.1.2:8080",
        SN,
        zkx1=ZKX1Client(SN, device_key, server_fingerprint=fingerprint),
    )
    settle(server, Deferred.fromCoroutine(device.handshake()))
    assert device.encrypts
    for _ in range(3):
        device.punch()
    assert settle(server, Deferred.fromCoroutine(device.upload_attlog())) == 3
    assert len(items(server, "attendance")) == 3
    options(server)  # the server restarts the session at the next handshake...
    device.punch()
    failed = False
    try:
        settle(server, Deferred.fromCoroutine(device.upload_attlog()))
    except Exception:
        failed = True
    assert failed and device.needs_handshake  # ...so the device does the exchange again
    settle(server, Deferred.fromCoroutine(device.handshake()))
    assert settle(server, Deferred.fromCoroutine(device.upload_attlog())) == 1
    assert len(items(server, "attendance")) == 4
