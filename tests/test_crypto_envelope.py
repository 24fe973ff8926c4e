"""
Layer 1: ZKX1 envelopes through ZKX1Transport.unwrap/remember/wrap, the
receiver algorithm of crypto.md §4.2 step by step, and the envelope parser
on arbitrary bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import zlib
from typing import Dict, Tuple

import pytest
from Crypto.Cipher import ARC4
from Crypto.PublicKey import RSA
from hypothesis import given
from hypothesis import strategies as st

from pushd.crypto import (
    BadCrc,
    BadEnvelope,
    BadTag,
    CryptoError,
    NoSession,
    Replay,
)
from pushd.crypto import exchange as machine
from pushd.crypto.transports import ZKX1Transport
from pushd.crypto.zkx1 import parse_envelope
from pushd.errors import ProtocolError
from pushd.sim_zkx1 import ZKX1Client, ZKX1ClientError, seal_body
from tests.crypto_support import NOW, SN, handshake

PUNCH = b"1452\t2015-07-30 15:16:28\t0\t1\t0\t0\t0"


@pytest.fixture(scope="module")
def transport() -> ZKX1Transport:
    return ZKX1Transport(RSA.generate(3072))


@pytest.fixture(scope="module")
def device_key() -> RSA.RsaKey:
    return RSA.generate(2048)


@pytest.fixture
def session(transport: ZKX1Transport, device_key: RSA.RsaKey) -> Tuple[ZKX1Client, bytes]:
    client = ZKX1Client(SN, device_key, server_fingerprint=transport.fingerprint)
    return client, handshake(transport, client)


def _forge(client: ZKX1Client, seq: int, plaintext: bytes, crc: bytes, ptlen: int) -> bytes:
    """An envelope with a valid tag over whatever CRC and length we like."""
    assert client.keys is not None
    key_m = hmac.new(client.keys.d2s_enc, b"rc4" + struct.pack(">Q", seq), hashlib.sha256)
    header = b"ZKX1\x01\x00" + struct.pack(">QI", seq, ptlen)
    ciphertext = ARC4.new(key_m.digest(), drop=3072).encrypt(plaintext + crc)
    tag = hmac.new(client.keys.d2s_mac, header + ciphertext, hashlib.sha256).digest()[:16]
    return base64.b64encode(header + ciphertext + tag)


def _flip(body: bytes, index: int) -> bytes:
    raw = bytearray(base64.b64decode(body))
    raw[index] ^= 0x01
    return base64.b64encode(bytes(raw))


# -- the good path ------------------------------------------------------------------


def test_encrypted_upload_is_unwrapped(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    for seq in (1, 2, 3):
        unwrapped = transport.unwrap(SN, client.seal(PUNCH), state, NOW)
        assert (unwrapped.plaintext, unwrapped.cached_reply, unwrapped.seq) == (PUNCH, None, seq)
        state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK: 1")
    assert transport.describe(state)["rx_seq"] == 3
    assert transport.encrypted_tables == frozenset({"ATTLOG"})


def test_gaps_in_sequence_numbers_are_accepted(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    client.tx_seq = 41
    unwrapped = transport.unwrap(SN, client.seal(PUNCH), state, NOW)
    assert unwrapped.seq == 42


def test_empty_plaintext_round_trips(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    assert transport.unwrap(SN, client.seal(b""), state, NOW).plaintext == b""


def test_server_to_device_envelopes_open_in_the_simulator_in_order(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    first, state = transport.wrap(SN, b"OK:1", state, NOW)
    second, state = transport.wrap(SN, b"C:7:INFO", state, NOW)
    assert transport.describe(state)["tx_seq"] == 2
    assert client.open(first) == b"OK:1"
    assert client.open(second) == b"C:7:INFO"
    with pytest.raises(ZKX1ClientError):
        client.open(first)  # replayed server message


def test_wrap_without_a_session_is_nosession(transport: ZKX1Transport) -> None:
    with pytest.raises(NoSession):
        transport.wrap(SN, b"OK", None, NOW)


# -- receiver algorithm: failures -----------------------------------------------------


def test_tampered_ciphertext_is_badtag(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    body = _flip(client.seal(PUNCH), 20)
    with pytest.raises(BadTag) as failure:
        transport.unwrap(SN, body, state, NOW)
    assert (failure.value.status, str(failure.value)) == (400, "ERROR ZKX1 BADTAG")
    assert failure.value.state is not None
    assert transport.describe(failure.value.state)["failures"] == 1


@pytest.mark.parametrize("index", [6, 12, 14, 17, -1])
def test_tampered_header_or_tag_is_badtag(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes], index: int
) -> None:
    client, state = session
    with pytest.raises(BadTag):
        transport.unwrap(SN, _flip(client.seal(PUNCH), index), state, NOW)


def test_wrong_crc_under_a_valid_tag_is_badcrc(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    good_crc = struct.pack(">I", zlib.crc32(PUNCH))
    bad_crc = bytes(b ^ 0xFF for b in good_crc)
    with pytest.raises(BadCrc) as failure:
        transport.unwrap(SN, _forge(client, 1, PUNCH, bad_crc, len(PUNCH)), state, NOW)
    assert (failure.value.status, str(failure.value)) == (400, "ERROR ZKX1 BADCRC")
    # the forgery itself is right: with the right CRC it is accepted
    assert transport.unwrap(SN, _forge(client, 1, PUNCH, good_crc, len(PUNCH)), state, NOW)


def test_wrong_ptlen_under_a_valid_tag_is_badcrc(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    crc = struct.pack(">I", zlib.crc32(PUNCH))
    with pytest.raises(BadCrc):
        transport.unwrap(SN, _forge(client, 1, PUNCH, crc, len(PUNCH) + 1), state, NOW)


def test_exact_replay_gets_the_cached_reply_and_is_not_processed_again(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    body = client.seal(PUNCH)
    unwrapped = transport.unwrap(SN, body, state, NOW)
    state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK: 1")
    again = transport.unwrap(SN, body, state, NOW + 5)
    assert (again.plaintext, again.cached_reply, again.seq) == (None, b"OK: 1", 1)


def test_a_tampered_copy_of_an_answered_message_is_badtag_not_the_cached_reply(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    body = client.seal(PUNCH)
    unwrapped = transport.unwrap(SN, body, state, NOW)
    state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK: 1")
    with pytest.raises(BadTag):
        transport.unwrap(SN, _flip(body, 20), state, NOW)  # same seq and tag


def test_another_message_with_an_answered_seq_is_replay(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    unwrapped = transport.unwrap(SN, client.seal(PUNCH), state, NOW)
    state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK: 1")
    assert client.keys is not None
    other = seal_body(client.keys.d2s_enc, client.keys.d2s_mac, 1, b"2\t2024-01-01 00:00:00")
    with pytest.raises(Replay) as failure:
        transport.unwrap(SN, other, state, NOW)
    assert (failure.value.status, str(failure.value)) == (409, "ERROR ZKX1 REPLAY")


def test_a_message_not_remembered_may_be_sent_again(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    """A 503 from the store: the lead does not call remember, the device resends."""
    client, state = session
    body = client.seal(PUNCH)
    transport.unwrap(SN, body, state, NOW)
    assert transport.unwrap(SN, body, state, NOW).plaintext == PUNCH


def test_the_replay_cache_holds_the_last_64_replies(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    bodies = []
    for n in range(machine.CACHE_SIZE + 6):
        body = client.seal(b"%d" % n)
        unwrapped = transport.unwrap(SN, body, state, NOW)
        state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, b"OK:%d" % n)
        bodies.append(body)
    assert len(machine.load(state).cache) == machine.CACHE_SIZE
    with pytest.raises(Replay):
        transport.unwrap(SN, bodies[0], state, NOW)
    assert transport.unwrap(SN, bodies[-1], state, NOW).cached_reply == b"OK:69"


def test_unknown_session_is_nosession(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    body = client.seal(PUNCH)
    for stored in (None, transport.restart(state)):
        with pytest.raises(NoSession) as failure:
            transport.unwrap(SN, body, stored, NOW)
        assert (failure.value.status, str(failure.value)) == (401, "ERROR ZKX1 NOSESSION")
        assert failure.value.state is None


def test_five_consecutive_failures_drop_the_session(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    for attempt in range(1, machine.MAX_FAILURES + 1):
        with pytest.raises(CryptoError) as failure:
            transport.unwrap(SN, _flip(client.seal(PUNCH), 20), state, NOW)
        assert failure.value.state is not None
        state = failure.value.state
        expected = 0 if attempt == machine.MAX_FAILURES else attempt
        assert transport.describe(state)["failures"] == expected
    assert transport.describe(state)["phase"] == "none"
    assert transport.describe(state)["pinned_key"] is not None
    with pytest.raises(NoSession):
        transport.unwrap(SN, client.seal(PUNCH), state, NOW)


def test_a_good_message_resets_the_failure_count(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    for _ in range(machine.MAX_FAILURES - 1):
        with pytest.raises(CryptoError) as failure:
            transport.unwrap(SN, b"WktYMQ==", state, NOW)  # malformed counts too
        assert failure.value.state is not None
        state = failure.value.state
    state = transport.unwrap(SN, client.seal(PUNCH), state, NOW).state
    assert transport.describe(state)["failures"] == 0
    with pytest.raises(BadTag) as failure:
        transport.unwrap(SN, _flip(client.seal(PUNCH), 20), state, NOW)
    assert failure.value.state is not None
    assert transport.describe(failure.value.state)["phase"] == "established"


def test_a_session_idle_for_24_hours_expires(
    transport: ZKX1Transport, session: Tuple[ZKX1Client, bytes]
) -> None:
    client, state = session
    day = machine.IDLE_SECONDS
    state = transport.unwrap(SN, client.seal(PUNCH), state, NOW + day - 1).state
    with pytest.raises(NoSession) as failure:
        transport.unwrap(SN, client.seal(PUNCH), state, NOW + 2 * day - 1)
    assert failure.value.state is not None
    facts = transport.describe(failure.value.state)
    assert facts["phase"] == "none" and facts["pinned_key"] is not None


# -- the parser on anything -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not base64!",
        b"WktYMQ",  # bad padding
        base64.b64encode(b"ZKX1\x01\x00" + bytes(31)),  # 37 bytes: too short
        base64.b64encode(b"ZKX2\x01\x00" + bytes(32)),
        base64.b64encode(b"ZKX1\x02\x00" + bytes(32)),
        base64.b64encode(b"ZKX1\x01\x01" + bytes(32)),
    ],
)
def test_malformed_envelopes_are_badenvelope(body: bytes) -> None:
    with pytest.raises(BadEnvelope) as failure:
        parse_envelope(body)
    assert failure.value.status == 400


def test_envelope_base64_may_be_wrapped_with_crlf_and_nul() -> None:
    body = base64.b64encode(b"ZKX1\x01\x00" + bytes(32))
    assert parse_envelope(body[:20] + b"\r\n" + body[20:] + b" \0").seq == 0


_ENVELOPE_LIKE = st.builds(
    lambda head, rest: base64.b64encode(head + rest),
    st.sampled_from([b"", b"ZKX1", b"ZKX1\x01", b"ZKX1\x01\x00", b"ZKX1\x01\x00" + bytes(12)]),
    st.binary(max_size=200),
)


@given(body=st.one_of(st.binary(max_size=300), _ENVELOPE_LIKE))
def test_parse_envelope_raises_nothing_but_crypto_errors(body: bytes) -> None:
    try:
        envelope = parse_envelope(body)
    except (CryptoError, ProtocolError):
        return
    assert len(envelope.tag) == 16


@given(body=st.one_of(st.binary(max_size=300), _ENVELOPE_LIKE))
def test_unwrap_raises_nothing_but_crypto_errors_on_anything(
    transport: ZKX1Transport, device_key: RSA.RsaKey, body: bytes
) -> None:
    state = _established_state(transport, device_key)
    try:
        transport.unwrap(SN, body, state, NOW)
    except (CryptoError, ProtocolError):
        pass
    else:  # pragma: no cover - a forged tag in 300 random bytes
        raise AssertionError("arbitrary bytes were accepted")


_STATES: Dict[str, bytes] = {}


def _established_state(transport: ZKX1Transport, device_key: RSA.RsaKey) -> bytes:
    """One handshake for all hypothesis examples (RSA is slow)."""
    if "state" not in _STATES:
        client = ZKX1Client(SN, device_key, server_fingerprint=transport.fingerprint)
        _STATES["state"] = handshake(transport, client)
    return _STATES["state"]
