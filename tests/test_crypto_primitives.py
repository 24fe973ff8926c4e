"""
Layer 1: the crypto primitives on known answers, and the ZKX1 test vectors of
the research note (crypto.md §4.2), from the server's implementation and from
the independent client implementation of the simulator.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import struct
from typing import Callable, Dict, Set, Tuple

import pytest

from pushd import sim_zkx1
from pushd.crypto import zkx1
from pushd.crypto.crc import crc32, crc32_bytes
from pushd.crypto.rc4 import DROP, rc4_drop3072

# -- RC4-drop3072 -----------------------------------------------------------------

# RFC 6229 §2, 40-bit key 0x0102030405: keystream at offsets 3072, 4080, 4096.
RFC6229_KEY = bytes.fromhex("0102030405")
RFC6229 = {
    3072: "ec0e11c479dc329dc8da7968fe965681",
    4080: "068326a2118416d21f9d04b2cd1ca050",
    4096: "ff25b58995996707e51fbdf08b34d875",
}


def _reference_rc4(key: bytes, length: int) -> bytes:
    """RC4 written out (RFC 6229 defines it by reference to this algorithm)."""
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) % 256
        s[i], s[j] = s[j], s[i]
    out = bytearray()
    i = j = 0
    for _ in range(length):
        i = (i + 1) % 256
        j = (j + s[i]) % 256
        s[i], s[j] = s[j], s[i]
        out.append(s[(s[i] + s[j]) % 256])
    return bytes(out)


def test_rc4_drop3072_keystream_is_rfc6229_from_offset_3072() -> None:
    keystream = rc4_drop3072(RFC6229_KEY, bytes(1040))
    for offset, expected in RFC6229.items():
        assert keystream[offset - DROP : offset - DROP + 16].hex() == expected


def test_rc4_drop3072_matches_a_written_out_rc4_with_3072_bytes_dropped() -> None:
    key = bytes(range(32))
    assert rc4_drop3072(key, bytes(300)) == _reference_rc4(key, DROP + 300)[DROP:]


def test_rc4_is_its_own_inverse() -> None:
    key = b"k" * 32
    data = b"1452\t2015-07-30 15:16:28\t0\t1"
    assert rc4_drop3072(key, rc4_drop3072(key, data)) == data


def test_rc4_refuses_empty_and_oversized_keys() -> None:
    with pytest.raises(ValueError):
        rc4_drop3072(b"", b"x")
    with pytest.raises(ValueError):
        rc4_drop3072(b"k" * 257, b"x")


# -- CRC32 ------------------------------------------------------------------------


def test_crc32_check_value_and_byte_order() -> None:
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32(b"") == 0
    assert crc32_bytes(b"123456789") == bytes.fromhex("cbf43926")


def test_crc32_is_unsigned() -> None:
    assert crc32(b"\xff" * 4) == 0xFFFFFFFF
    assert crc32(VECTOR_PLAINTEXT) == 0x1062445F


# -- HKDF -------------------------------------------------------------------------


def test_simulator_hkdf_is_rfc5869_test_case_1() -> None:
    okm = sim_zkx1.hkdf_sha256(b"\x0b" * 22, bytes(range(13)), bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


# -- the ZKX1 vectors (crypto.md §4.2) --------------------------------------------

SN = "TESTSN0001"
PD = bytes(range(0x00, 0x20))
PS = bytes(range(0x20, 0x40))
C1 = b"\xc1" * 16
C2 = b"\xc2" * 16
R1 = bytes(range(0x40, 0x60))
R2 = bytes(range(0x60, 0x80))
TH = "8cf23c5e45ffc44752ccbdc429e859e26fb2ba1a28b7a11fb823b67caf6e5b50"
KEYS = (
    "b8c16caf20a3ccf2cd86e6e613a683bd9b00f2c65a5ab8e192a4b7a35dbc3d7a",
    "0e1bd8eba748589c74d143bcac352b88389ad914eccff8083972fcad63659f07",
    "f39f090ea47a93dec7231d5a130b1ee020ed49410518a601fe94a3903dcc27e2",
    "9f76cbc2c42b5578c4c9c415ac43a9f734ff712300eb4d3801c603eb404883e2",
)
VECTOR_PLAINTEXT = b"1452\t2015-07-30 15:16:28\t0\t1\t0\t0\t0"
KEY_M = "b121228adef834107d894655e7c59e258cc910f4ae36911777da517d1e7194ee"
HEADER = "5a4b58310100000000000000000100000022"
CT = "54896df2931f9c021127cda2786ea02e064626752584c4f3162a58498e50816173daa18f2d68"
TAG = "9c7841872090384e884db17e23883d8c"
BODY = (
    b"WktYMQEAAAAAAAAAAAEAAAAiVIlt8pMfnAIRJ82ieG6gLgZGJnUlhMTzFipYSY5QgWFz2qGPLWic"
    b"eEGHIJA4TohNsX4jiD2M"
)
S2D_BODY = b"WktYMQEAAAAAAAAAAAEAAAAEfaJrBpdow1ZVrL5vFVclL3oXSacbSj/8"


def _server_derive() -> Tuple[bytes, Tuple[bytes, ...]]:
    th = zkx1.transcript_hash(SN, PD, PS, C1, C2)
    keys = zkx1.derive_keys(R1, R2, th)
    return th, (keys.d2s_enc, keys.d2s_mac, keys.s2d_enc, keys.s2d_mac)


def _client_derive() -> Tuple[bytes, Tuple[bytes, ...]]:
    th, keys = sim_zkx1.derive_client_keys(SN, PD, PS, C1, C2, R1, R2)
    return th, (keys.d2s_enc, keys.d2s_mac, keys.s2d_enc, keys.s2d_mac)


def _server_seal(enc: bytes, mac: bytes, seq: int, plaintext: bytes) -> bytes:
    return zkx1.b64encode(zkx1.seal(enc, mac, seq, plaintext))


Derive = Callable[[], Tuple[bytes, Tuple[bytes, ...]]]
IMPLEMENTATIONS: Dict[str, Tuple[Derive, Callable[..., bytes]]] = {
    "server": (_server_derive, _server_seal),
    "simulator": (_client_derive, sim_zkx1.seal_body),
}


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_transcript_hash_and_session_keys(implementation: str) -> None:
    derive, _ = IMPLEMENTATIONS[implementation]
    th, keys = derive()
    assert th.hex() == TH
    assert tuple(key.hex() for key in keys) == KEYS


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_device_to_server_body(implementation: str) -> None:
    derive, seal = IMPLEMENTATIONS[implementation]
    _, (d2s_enc, d2s_mac, _s2d_enc, _s2d_mac) = derive()
    body = seal(d2s_enc, d2s_mac, 1, VECTOR_PLAINTEXT)
    assert body == BODY
    raw = base64.b64decode(body)
    assert raw[:18].hex() == HEADER
    assert raw[18:-16].hex() == CT
    assert raw[-16:].hex() == TAG


@pytest.mark.parametrize("implementation", sorted(IMPLEMENTATIONS))
def test_server_to_device_body(implementation: str) -> None:
    derive, seal = IMPLEMENTATIONS[implementation]
    _, (_d2s_enc, _d2s_mac, s2d_enc, s2d_mac) = derive()
    assert seal(s2d_enc, s2d_mac, 1, b"OK:1") == S2D_BODY


def test_message_key() -> None:
    assert zkx1.message_key(bytes.fromhex(KEYS[0]), 1).hex() == KEY_M


def test_vector_ciphertext_is_rc4_of_plaintext_and_crc_under_key_m() -> None:
    ct = rc4_drop3072(bytes.fromhex(KEY_M), VECTOR_PLAINTEXT + crc32_bytes(VECTOR_PLAINTEXT))
    assert ct.hex() == CT


def test_vector_body_opens_with_both_implementations() -> None:
    d2s_enc, d2s_mac = bytes.fromhex(KEYS[0]), bytes.fromhex(KEYS[1])
    envelope = zkx1.parse_envelope(BODY)
    assert (envelope.seq, envelope.ptlen) == (1, len(VECTOR_PLAINTEXT))
    assert zkx1.open_envelope(envelope, d2s_enc, d2s_mac) == VECTOR_PLAINTEXT
    assert sim_zkx1.open_body(d2s_enc, d2s_mac, BODY) == (1, VECTOR_PLAINTEXT)
    s2d_enc, s2d_mac = bytes.fromhex(KEYS[2]), bytes.fromhex(KEYS[3])
    assert zkx1.open_envelope(zkx1.parse_envelope(S2D_BODY), s2d_enc, s2d_mac) == b"OK:1"


def test_every_envelope_body_starts_with_the_base64_of_the_magic() -> None:
    for seq in (1, 2**32, 2**64 - 1):
        assert zkx1.b64encode(zkx1.seal(b"e" * 32, b"m" * 32, seq, b"x")).startswith(b"WktYMQ")


def test_transcript_fields_are_length_prefixed() -> None:
    assert zkx1.lp(b"abc") == b"\x00\x03abc"
    expected = hashlib.sha256(
        b"ZKX1-transcript" + b"".join(struct.pack(">H", len(f)) + f for f in (b"S", PD, PS, C1, C2))
    ).digest()
    assert zkx1.transcript_hash("S", PD, PS, C1, C2) == expected
    with pytest.raises(ValueError):
        zkx1.lp(bytes(65536))


def test_seal_refuses_out_of_range_sequence_numbers() -> None:
    for seq in (0, 2**64):
        with pytest.raises(ValueError):
            zkx1.seal(b"e" * 32, b"m" * 32, seq, b"x")


def test_derive_keys_refuses_short_factors() -> None:
    with pytest.raises(ValueError):
        zkx1.derive_keys(R1[:16], R2, bytes(32))


def test_session_keys_do_not_show_in_repr() -> None:
    keys = zkx1.derive_keys(R1, R2, bytes(32))
    assert KEYS[0] not in repr(keys) and "secret" in repr(keys)


def test_the_simulator_client_is_independent_of_the_server_code() -> None:
    with open(sim_zkx1.__file__, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    imported: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert not {name for name in imported if name.startswith("pushd")}
