"""
Layer 1: the ZKX1 key and factor exchange, server (ZKX1Transport) against the
independent client of the simulator, in memory; the session state machine;
the plain transport and vendor key blobs.
"""

from __future__ import annotations

import base64
import os

import pytest
from Crypto.PublicKey import RSA
from hypothesis import given
from hypothesis import strategies as st
from zope.interface.verify import verifyObject

from pushd.crypto import (
    BadDeviceKey,
    CryptoError,
    ExchangeFailed,
    ExchangeNotSupported,
    ExchangeOutOfOrder,
    KeyMismatch,
    NoSession,
    StateError,
)
from pushd.crypto import exchange as machine
from pushd.crypto.keys import fingerprint, oaep_encrypt, spki_der
from pushd.crypto.transports import PlainTransport, ZKX1Transport
from pushd.crypto.vendor import VENDOR_BLOB_SIZES, describe_exchange, recognise_publickey
from pushd.crypto.zkx1 import SessionKeys
from pushd.interfaces import ICryptoTransport
from pushd.sim_zkx1 import ZKX1Client, ZKX1ClientError
from tests.crypto_support import NOW, SN, handshake


@pytest.fixture(scope="module")
def server_key() -> RSA.RsaKey:
    return RSA.generate(3072)


@pytest.fixture(scope="module")
def device_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture(scope="module")
def other_device_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture
def transport(server_key: RSA.RsaKey) -> ZKX1Transport:
    return ZKX1Transport(server_key)


@pytest.fixture
def client(transport: ZKX1Transport, device_key: RSA.RsaKey) -> ZKX1Client:
    return ZKX1Client(SN, device_key, server_fingerprint=transport.fingerprint)


def _keys(state: bytes) -> SessionKeys:
    keys = machine.load(state).keys
    assert keys is not None
    return keys


# -- the full handshake -------------------------------------------------------------


def test_transports_provide_the_interface(transport: ZKX1Transport) -> None:
    assert verifyObject(ICryptoTransport, transport)
    assert verifyObject(ICryptoTransport, PlainTransport())


def test_full_handshake_gives_both_sides_the_same_keys(
    transport: ZKX1Transport, client: ZKX1Client
) -> None:
    state = handshake(transport, client)
    keys = _keys(state)
    assert client.keys is not None
    assert (keys.d2s_enc, keys.d2s_mac, keys.s2d_enc, keys.s2d_mac) == (
        client.keys.d2s_enc,
        client.keys.d2s_mac,
        client.keys.s2d_enc,
        client.keys.s2d_mac,
    )
    facts = transport.describe(state)
    assert facts["phase"] == "established"
    assert facts["pinned_key"] == fingerprint(client.device_spki)
    unwrapped = transport.unwrap(SN, client.seal(b"1\t2024-01-02 03:04:05\t0\t1"), state, NOW)
    assert unwrapped.plaintext == b"1\t2024-01-02 03:04:05\t0\t1"


def test_exchange_replies_are_the_server_key_and_a_factor_under_the_device_key(
    transport: ZKX1Transport, client: ZKX1Client, server_key: RSA.RsaKey
) -> None:
    reply, state = transport.exchange(SN, "publickey", client.publickey_request(), None, NOW)
    assert reply == b"PublicKey=" + base64.b64encode(spki_der(server_key))
    client.publickey_reply(reply)
    reply, state = transport.exchange(SN, "factors", client.factors_request(), state, NOW)
    name, _, value = reply.partition(b"=")
    assert name == b"Factors"
    assert len(base64.b64decode(value, validate=True)) == 256  # RSA-2048 device key
    assert not reply.endswith(b"\n")


def test_the_serial_number_is_bound_into_the_session_keys(
    transport: ZKX1Transport, client: ZKX1Client
) -> None:
    state = handshake(transport, client, sn="OTHER-SN")
    with pytest.raises(CryptoError) as failure:
        transport.unwrap(SN, client.seal(b"x"), state, NOW)
    assert str(failure.value) == "ERROR ZKX1 BADTAG"  # keys differ only by the SN
    state = handshake(transport, client)  # with the right SN
    assert transport.unwrap(SN, client.seal(b"x"), state, NOW).plaintext == b"x"


def test_session_continues_on_another_node_with_the_state_blob(
    server_key: RSA.RsaKey, client: ZKX1Client
) -> None:
    state = handshake(ZKX1Transport(server_key), client)
    other_node = ZKX1Transport(server_key)
    assert other_node.unwrap(SN, client.seal(b"x"), state, NOW).plaintext == b"x"


def test_prefix_is_matched_case_insensitively_and_base64_may_be_wrapped(
    transport: ZKX1Transport, client: ZKX1Client
) -> None:
    value = base64.b64encode(client.device_spki)
    wrapped = b"\r\n".join(value[i : i + 76] for i in range(0, len(value), 76))
    body = b"publickey=" + wrapped + b"\r\n\0"
    reply, state = transport.exchange(SN, "PublicKey", body, None, NOW)
    assert reply.startswith(b"PublicKey=")
    assert machine.load(state).phase is machine.Phase.KEYED


def test_exchange_body_is_never_form_decoded(transport: ZKX1Transport, client: ZKX1Client) -> None:
    value = base64.b64encode(client.device_spki)
    assert b"+" in value or b"/" in value
    quoted = value.replace(b"+", b"%2B").replace(b"/", b"%2F").replace(b"=", b"%3D")
    with pytest.raises(ExchangeFailed):
        transport.exchange(SN, "publickey", b"PublicKey=" + quoted, None, NOW)
    spaced = value.replace(b"+", b" ")  # what form-decoding a raw value would give
    if spaced != value:
        with pytest.raises(ExchangeFailed):
            transport.exchange(SN, "publickey", b"PublicKey=" + spaced, None, NOW)


# -- ordering, pinning, failures -----------------------------------------------------


def test_factors_before_publickey_is_409(transport: ZKX1Transport, client: ZKX1Client) -> None:
    body = ZKX1Client(SN, client.device_key).publickey_request()  # any body
    with pytest.raises(ExchangeOutOfOrder) as failure:
        transport.exchange(SN, "factors", body.replace(b"PublicKey", b"Factors"), None, NOW)
    assert failure.value.status == 409
    assert str(failure.value) == "ERROR ZKX1 ORDER"


def test_factors_twice_is_409(transport: ZKX1Transport, client: ZKX1Client) -> None:
    state = handshake(transport, client)
    with pytest.raises(ExchangeOutOfOrder):
        transport.exchange(SN, "factors", client.factors_request(), state, NOW)


def test_factors_after_restart_is_409(transport: ZKX1Transport, client: ZKX1Client) -> None:
    reply, state = transport.exchange(SN, "publickey", client.publickey_request(), None, NOW)
    client.publickey_reply(reply)
    state = transport.restart(state)
    with pytest.raises(ExchangeOutOfOrder):
        transport.exchange(SN, "factors", client.factors_request(), state, NOW)


def test_another_device_key_for_a_pinned_sn_is_403(
    transport: ZKX1Transport, client: ZKX1Client, other_device_key: RSA.RsaKey
) -> None:
    state = handshake(transport, client)
    impostor = ZKX1Client(SN, other_device_key, server_fingerprint=transport.fingerprint)
    with pytest.raises(KeyMismatch) as failure:
        transport.exchange(SN, "publickey", impostor.publickey_request(), state, NOW)
    assert failure.value.status == 403
    assert failure.value.state is None  # the stored session is untouched
    assert transport.unwrap(SN, client.seal(b"still"), state, NOW).plaintext == b"still"


def test_restart_discards_the_session_and_keeps_the_pin(
    transport: ZKX1Transport, client: ZKX1Client, other_device_key: RSA.RsaKey
) -> None:
    state = transport.restart(handshake(transport, client))
    assert transport.describe(state)["phase"] == "none"
    assert transport.describe(state)["pinned_key"] == fingerprint(client.device_spki)
    with pytest.raises(NoSession):
        transport.unwrap(SN, client.seal(b"x"), state, NOW)
    impostor = ZKX1Client(SN, other_device_key)
    with pytest.raises(KeyMismatch):
        transport.exchange(SN, "publickey", impostor.publickey_request(), state, NOW)
    state = handshake(transport, client, state)
    assert transport.unwrap(SN, client.seal(b"x"), state, NOW).plaintext == b"x"


def test_preregistered_pin_refuses_other_keys(
    transport: ZKX1Transport, client: ZKX1Client, other_device_key: RSA.RsaKey
) -> None:
    state = transport.pin(None, spki_der(other_device_key))
    with pytest.raises(KeyMismatch):
        transport.exchange(SN, "publickey", client.publickey_request(), state, NOW)


def test_oaep_failure_is_a_generic_400(
    transport: ZKX1Transport, client: ZKX1Client, server_key: RSA.RsaKey
) -> None:
    _, state = transport.exchange(SN, "publickey", client.publickey_request(), None, NOW)
    bodies = {
        "random ciphertext": b"Factors=" + base64.b64encode(os.urandom(384)),
        "short ciphertext": b"Factors=" + base64.b64encode(os.urandom(256)),
        "not base64": b"Factors=***",
        "wrong name": b"PublicKey=" + base64.b64encode(os.urandom(384)),
        "16-byte factor": b"Factors="
        + base64.b64encode(oaep_encrypt(server_key.public_key(), b"r" * 16, os.urandom)),
    }
    answers = set()
    for body in bodies.values():
        with pytest.raises(ExchangeFailed) as failure:
            transport.exchange(SN, "factors", body, state, NOW)
        answers.add((failure.value.status, str(failure.value)))
    assert answers == {(400, "ERROR ZKX1 EXCHANGE")}


def test_unknown_exchange_type_is_refused(transport: ZKX1Transport) -> None:
    with pytest.raises(ExchangeFailed):
        transport.exchange(SN, "certificate", b"PublicKey=AAAA", None, NOW)


def test_non_ascii_serial_number_is_refused(transport: ZKX1Transport, client: ZKX1Client) -> None:
    with pytest.raises(ExchangeFailed):
        handshake(transport, client, sn="Ñ001")


def test_a_weak_device_key_is_refused_with_the_generic_body(transport: ZKX1Transport) -> None:
    weak = ZKX1Client(SN, RSA.generate(1024))
    with pytest.raises(BadDeviceKey) as failure:
        transport.exchange(SN, "publickey", weak.publickey_request(), None, NOW)
    assert str(failure.value) == "ERROR ZKX1 EXCHANGE"
    assert "1024" in failure.value.detail


def test_a_handshake_left_half_way_expires(transport: ZKX1Transport, client: ZKX1Client) -> None:
    reply, state = transport.exchange(SN, "publickey", client.publickey_request(), None, NOW)
    client.publickey_reply(reply)
    later = NOW + machine.IDLE_SECONDS
    with pytest.raises(ExchangeOutOfOrder) as failure:
        transport.exchange(SN, "factors", client.factors_request(), state, later)
    assert failure.value.state is not None
    assert transport.describe(failure.value.state)["phase"] == "none"


def test_a_new_publickey_replaces_an_established_session(
    transport: ZKX1Transport, client: ZKX1Client
) -> None:
    state = handshake(transport, client)
    old = client.seal(b"old")
    state = handshake(transport, client, state)
    with pytest.raises(CryptoError):
        transport.unwrap(SN, old, state, NOW)  # sealed under the old keys
    assert transport.unwrap(SN, client.seal(b"new"), state, NOW).plaintext == b"new"


# -- the client pins the server ------------------------------------------------------


def test_client_refuses_a_server_key_it_did_not_pin(
    transport: ZKX1Transport, device_key: RSA.RsaKey
) -> None:
    client = ZKX1Client(SN, device_key, server_fingerprint="00" * 32)
    reply, _ = transport.exchange(SN, "publickey", client.publickey_request(), None, NOW)
    with pytest.raises(ZKX1ClientError):
        client.publickey_reply(reply)


def test_client_trusts_the_first_server_key_without_a_pin(
    transport: ZKX1Transport, device_key: RSA.RsaKey
) -> None:
    client = ZKX1Client(SN, device_key)
    handshake(transport, client)
    assert client.server_fingerprint == transport.fingerprint


def test_client_ignores_case_and_colons_in_the_pin(
    transport: ZKX1Transport, device_key: RSA.RsaKey
) -> None:
    fp = transport.fingerprint.upper()
    pin = ":".join(fp[i : i + 2] for i in range(0, len(fp), 2))
    handshake(transport, ZKX1Client(SN, device_key, server_fingerprint=pin))


# -- the state machine ---------------------------------------------------------------


def test_transition_table_refusals() -> None:
    with pytest.raises(ExchangeOutOfOrder):
        machine.step(machine.Phase.NONE, machine.Event.FACTORS)
    with pytest.raises(ExchangeOutOfOrder):
        machine.step(machine.Phase.ESTABLISHED, machine.Event.FACTORS)
    for phase in (machine.Phase.NONE, machine.Phase.KEYED):
        for event in (machine.Event.MESSAGE, machine.Event.SEND):
            with pytest.raises(NoSession):
                machine.step(phase, event)
    for phase in machine.Phase:
        assert machine.step(phase, machine.Event.RESTART) is machine.Phase.NONE
        assert machine.step(phase, machine.Event.PUBLICKEY) is machine.Phase.KEYED


def test_sessions_refuse_inconsistent_fields() -> None:
    keys = SessionKeys(*(bytes([i]) * 32 for i in range(4)))
    with pytest.raises(ValueError):
        machine.Session(phase=machine.Phase.ESTABLISHED, pin=b"k", touched=NOW)  # no keys
    with pytest.raises(ValueError):
        machine.Session(phase=machine.Phase.KEYED, keys=keys, pin=b"k", touched=NOW)
    with pytest.raises(ValueError):
        machine.Session(phase=machine.Phase.KEYED, touched=NOW)  # nothing pinned
    with pytest.raises(ValueError):
        machine.Session(rx_seq=3)  # sequence numbers without a session
    with pytest.raises(ValueError):
        machine.Session(failures=machine.MAX_FAILURES)


def test_state_blob_round_trips(transport: ZKX1Transport, client: ZKX1Client) -> None:
    state = handshake(transport, client)
    unwrapped = transport.unwrap(SN, client.seal(b"x"), state, NOW)
    state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK: 1")
    session = machine.load(state)
    assert machine.load(machine.dump(session)) == session
    assert machine.dump(session) == state
    assert session.rx_seq == 1 and session.cache[0].reply == b"OK: 1"


@pytest.mark.parametrize(
    "blob",
    [
        b"\xff",
        b"[]",
        b'{"profile":"zkx1","v":2}',
        b'{"profile":"zkx1","v":1,"phase":"nope"}',
        b'{"profile":"zkx1","v":1,"phase":"none","rx":"1","tx":0,"cache":[],"fail":0}',
        b'{"profile":"zkx1","v":1,"phase":"none","pin":"***","rx":0,"tx":0,"cache":[],"fail":0}',
        b'{"profile":"zkx1","v":1,"phase":"established","pin":"AA==","keys":["00"],'
        b'"rx":0,"tx":0,"cache":[],"fail":0,"touched":1}',
        b'{"profile":"zkx1","v":1,"phase":"none","rx":0,"tx":0,"cache":[[1]],"fail":0}',
        b'{"profile":"zkx1","v":1,"phase":"none","rx":0,"tx":0,"cache":[],"fail":true}',
    ],
)
def test_unreadable_state_is_a_state_error(transport: ZKX1Transport, blob: bytes) -> None:
    with pytest.raises(StateError) as failure:
        machine.load(blob)
    assert failure.value.status == 500
    with pytest.raises(StateError):
        transport.unwrap(SN, b"", blob, NOW)


def test_no_state_or_another_profiles_state_is_a_new_session() -> None:
    for blob in (None, b"", b'{"profile":"acme","pin":"x"}'):
        assert machine.load(blob) == machine.Session()


# -- plain transport and vendor blobs ------------------------------------------------


def _vendor_blob(size: int) -> bytes:
    raw = b"\x8a" + os.urandom(size - 1)  # neither DER nor PEM at the start
    return base64.b64encode(raw)


def test_plain_transport_refuses_exchange_with_404_and_recognises_vendor_blobs() -> None:
    plain = PlainTransport()
    assert list(plain.options()) == [("Encrypt", "0")]
    with pytest.raises(ExchangeNotSupported) as failure:
        plain.exchange(SN, "publickey", b"PublicKey=" + _vendor_blob(260), None, NOW)
    assert failure.value.status == 404
    assert str(failure.value) == "Not Supported"
    assert "RSA-1024" in failure.value.detail and "vendor" in failure.value.detail
    with pytest.raises(ExchangeNotSupported) as failure:
        plain.exchange(SN, "factors", b"Factors=" + base64.b64encode(b"\x01" * 256), None, NOW)
    assert "RSA-2048 ciphertext" in failure.value.detail


def test_plain_transport_passes_bodies_and_state_through() -> None:
    plain = PlainTransport()
    unwrapped = plain.unwrap(SN, b"1\t2\t3", b"blob", NOW)
    assert (unwrapped.plaintext, unwrapped.state) == (b"1\t2\t3", b"blob")
    assert plain.wrap(SN, b"OK", None, NOW) == (b"OK", b"")
    assert plain.restart(b"blob") == b"blob"
    assert plain.remember(b"blob", 0, b"", b"OK") == b"blob"
    assert plain.encrypted_tables == frozenset()


def test_vendor_blob_sizes_of_the_published_example() -> None:
    assert VENDOR_BLOB_SIZES[260] == 1024 and VENDOR_BLOB_SIZES[435] == 2048
    assert recognise_publickey(_vendor_blob(435)) is not None
    assert recognise_publickey(_vendor_blob(300)) is None
    assert recognise_publickey(base64.b64encode(b"\x30" + os.urandom(259))) is None
    assert recognise_publickey(base64.b64encode(b"-----" + os.urandom(255))) is None
    assert recognise_publickey(b"not base64!") is None


def test_describe_exchange_names_a_zkx1_client_sent_to_a_plain_device(
    client: ZKX1Client,
) -> None:
    assert "ZKX1 client" in describe_exchange("publickey", client.publickey_request())


@given(kind=st.text(max_size=40), body=st.binary(max_size=600))
def test_describe_exchange_never_raises(kind: str, body: bytes) -> None:
    assert isinstance(describe_exchange(kind, body), str)
