# -*- test-case-name: tests.test_crypto_exchange -*-
"""
The per-device ZKX1 session as an explicit, pure state machine.

Phases and the events that move between them (:data:`TRANSITIONS`)::

    NONE         --publickey-->  KEYED        (the device key is pinned here)
    KEYED        --publickey-->  KEYED        (a retried first step)
    ESTABLISHED  --publickey-->  KEYED        (a new handshake replaces the session)
    KEYED        --factors---->  ESTABLISHED  (session keys derived)
    ESTABLISHED  --message---->  ESTABLISHED  (an envelope received, a reply cached)
    ESTABLISHED  --send------->  ESTABLISHED  (an envelope sent)
    any          --restart---->  NONE         (GET options=all; the pin is kept)
    any          --expire----->  NONE         (24 h without a good message)
    any          --drop------->  NONE         (5 consecutive failures)

Any other (phase, event) pair raises: :class:`ExchangeOutOfOrder` (HTTP 409)
for ``factors``, :class:`NoSession` (HTTP 401) for ``message`` and ``send``.
A :class:`Session` is immutable and checks its own invariants, so a failed
transition never leaves anything half set: callers get either a new,
consistent session or an exception.

:func:`dump` and :func:`load` turn a session into the opaque, versioned
state blob (JSON) that the server keeps in its store.
"""

from __future__ import annotations

import base64
import hmac
import json
from dataclasses import dataclass, replace
from enum import Enum
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, Union

from pushd.crypto.errors import (
    CryptoError,
    ExchangeOutOfOrder,
    KeyMismatch,
    NoSession,
    StateError,
)
from pushd.crypto.keys import fingerprint
from pushd.crypto.zkx1 import MAX_SEQ, TAG_LEN, SessionKeys

__all__ = [
    "CACHE_SIZE",
    "IDLE_SECONDS",
    "MAX_FAILURES",
    "PROFILE",
    "STATE_VERSION",
    "TRANSITIONS",
    "CacheEntry",
    "Event",
    "Phase",
    "Session",
    "cached_reply",
    "describe",
    "dump",
    "expire",
    "load",
    "on_accept",
    "on_factors",
    "on_failure",
    "on_publickey",
    "on_reply",
    "on_restart",
    "on_send",
    "step",
    "with_pin",
]

PROFILE = "zkx1"
STATE_VERSION = 1
#: Replies kept for exact replays.
CACHE_SIZE = 64
#: Consecutive failures that drop the session.
MAX_FAILURES = 5
#: A session idle this long (seconds) is gone.
IDLE_SECONDS = 24 * 3600


class Phase(Enum):
    """Where the handshake of one device stands."""

    NONE = "none"
    KEYED = "keyed"
    ESTABLISHED = "established"


class Event(Enum):
    """What happens to a session."""

    PUBLICKEY = "publickey"
    FACTORS = "factors"
    MESSAGE = "message"
    SEND = "send"
    RESTART = "restart"
    EXPIRE = "expire"
    DROP = "drop"


def _table() -> Dict[Tuple[Phase, Event], Phase]:
    table = {
        (Phase.NONE, Event.PUBLICKEY): Phase.KEYED,
        (Phase.KEYED, Event.PUBLICKEY): Phase.KEYED,
        (Phase.ESTABLISHED, Event.PUBLICKEY): Phase.KEYED,
        (Phase.KEYED, Event.FACTORS): Phase.ESTABLISHED,
        (Phase.ESTABLISHED, Event.MESSAGE): Phase.ESTABLISHED,
        (Phase.ESTABLISHED, Event.SEND): Phase.ESTABLISHED,
    }
    for phase in Phase:
        for event in (Event.RESTART, Event.EXPIRE, Event.DROP):
            table[(phase, event)] = Phase.NONE
    return table


#: Every allowed transition: ``(phase, event) -> next phase``.
TRANSITIONS: Mapping[Tuple[Phase, Event], Phase] = MappingProxyType(_table())

_REFUSALS: Mapping[Event, Type[CryptoError]] = MappingProxyType(
    {
        Event.FACTORS: ExchangeOutOfOrder,
        Event.MESSAGE: NoSession,
        Event.SEND: NoSession,
    }
)


def step(phase: Phase, event: Event) -> Phase:
    """
    The phase after ``event``.

    :raises ExchangeOutOfOrder: ``factors`` outside ``KEYED``.
    :raises NoSession: ``message`` or ``send`` outside ``ESTABLISHED``.
    """
    try:
        return TRANSITIONS[(phase, event)]
    except KeyError:
        raise _REFUSALS[event](f"{event.value} in phase {phase.value}") from None


@dataclass(frozen=True)
class CacheEntry:
    """The reply given to one received message, kept for its exact replay."""

    seq: int
    tag: bytes
    reply: bytes


@dataclass(frozen=True)
class Session:
    """
    The ZKX1 state of one device.

    :ivar pin: the pinned device key (DER SPKI), kept across sessions.
    :ivar keys: the session keys, set exactly in ``ESTABLISHED``.
    :ivar rx_seq: the highest device-to-server seq answered.
    :ivar tx_seq: the last server-to-device seq sent.
    :ivar touched: when the session last made progress (seconds), set
        whenever the phase is not ``NONE``.
    """

    phase: Phase = Phase.NONE
    pin: Optional[bytes] = None
    keys: Optional[SessionKeys] = None
    rx_seq: int = 0
    tx_seq: int = 0
    cache: Tuple[CacheEntry, ...] = ()
    failures: int = 0
    touched: Optional[float] = None

    def __post_init__(self) -> None:
        problems = []
        if (self.phase is Phase.ESTABLISHED) != (self.keys is not None):
            problems.append("keys are set exactly when established")
        if self.phase is not Phase.NONE and (self.pin is None or self.touched is None):
            problems.append("a session has a pinned key and a time")
        if self.phase is not Phase.ESTABLISHED and (self.rx_seq or self.tx_seq or self.cache):
            problems.append("sequence numbers and cache belong to an established session")
        if not (0 <= self.rx_seq <= MAX_SEQ and 0 <= self.tx_seq <= MAX_SEQ):
            problems.append("sequence number out of range")
        if not 0 <= self.failures < MAX_FAILURES:
            problems.append("failure count out of range")
        if len(self.cache) > CACHE_SIZE:
            problems.append("replay cache too large")
        if problems:
            raise ValueError("inconsistent session: " + "; ".join(problems))

    def __repr__(self) -> str:
        return (
            f"Session(phase={self.phase.value}, pinned={self.pin is not None}, "
            f"rx_seq={self.rx_seq}, tx_seq={self.tx_seq}, failures={self.failures})"
        )


def _none(session: Session, event: Event) -> Session:
    step(session.phase, event)
    return Session(pin=session.pin)


def on_publickey(session: Session, device_key: bytes, now: float) -> Session:
    """
    The device sent its public key (DER SPKI): pin it on first use, or
    check it against the pin; any previous session is replaced.

    :raises KeyMismatch: the SN has a different pinned key.
    """
    if session.pin is not None and not hmac.compare_digest(session.pin, device_key):
        raise KeyMismatch("the device key differs from the pinned key")
    phase = step(session.phase, Event.PUBLICKEY)
    return Session(phase=phase, pin=device_key, touched=now)


def on_factors(session: Session, keys: SessionKeys, now: float) -> Session:
    """
    The factors were exchanged and ``keys`` derived: the session is established.

    :raises ExchangeOutOfOrder: no public key was exchanged first.
    """
    phase = step(session.phase, Event.FACTORS)
    return Session(phase=phase, pin=session.pin, keys=keys, touched=now)


def on_restart(session: Session) -> Session:
    """A new ``GET options=all``: the session is discarded, the pin kept."""
    return _none(session, Event.RESTART)


def with_pin(session: Session, device_key: bytes) -> Session:
    """Pin ``device_key`` (DER SPKI) administratively; any session is discarded."""
    return Session(pin=device_key)


def expire(session: Session, now: float) -> Session:
    """The session, or ``NONE`` (pin kept) once it was idle for :data:`IDLE_SECONDS`."""
    if session.touched is not None and now - session.touched >= IDLE_SECONDS:
        return _none(session, Event.EXPIRE)
    return session


def on_failure(session: Session) -> Session:
    """
    One more consecutive failure; the :data:`MAX_FAILURES`-th drops the session.
    Failures without a session are not counted.
    """
    if session.phase is not Phase.ESTABLISHED:
        return session
    if session.failures + 1 >= MAX_FAILURES:
        return _none(session, Event.DROP)
    return replace(session, failures=session.failures + 1)


def on_accept(session: Session, now: float) -> Session:
    """
    A message passed its checks: failures are reset and the session is fresh.

    :raises NoSession: the session is not established.
    """
    step(session.phase, Event.MESSAGE)
    return replace(session, failures=0, touched=now)


def on_reply(session: Session, seq: int, tag: bytes, reply: bytes) -> Session:
    """
    Message ``seq`` (tagged ``tag``) was answered with ``reply``: it can no
    longer be processed again, and its exact replay gets ``reply``.  The
    cache keeps the last :data:`CACHE_SIZE` entries.

    :raises NoSession: the session is not established.
    :raises ValueError: ``seq`` or ``tag`` cannot be a message's.
    """
    step(session.phase, Event.MESSAGE)
    if not 1 <= seq <= MAX_SEQ or len(tag) != TAG_LEN:
        raise ValueError("not a message's sequence number and tag")
    kept = tuple(entry for entry in session.cache if entry.seq != seq)
    cache = (*kept, CacheEntry(seq, tag, reply))[-CACHE_SIZE:]
    return replace(session, rx_seq=max(session.rx_seq, seq), cache=cache)


def on_send(session: Session, now: float) -> Tuple[Session, int]:
    """
    Take the next server-to-device sequence number.

    :returns: the new session and the seq to seal with.
    :raises NoSession: the session is not established.
    """
    step(session.phase, Event.SEND)
    if session.tx_seq >= MAX_SEQ:
        raise NoSession("server-to-device sequence numbers exhausted")
    seq = session.tx_seq + 1
    return replace(session, tx_seq=seq, touched=now), seq


def cached_reply(session: Session, seq: int, tag: bytes) -> Optional[bytes]:
    """The reply cached for message ``(seq, tag)``, or ``None``."""
    for entry in session.cache:
        if entry.seq == seq and hmac.compare_digest(entry.tag, tag):
            return entry.reply
    return None


# -- the state blob ---------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dump(session: Session) -> bytes:
    """The session as a versioned JSON state blob (it holds secret keys: store it safely)."""
    keys = session.keys
    obj: Dict[str, Any] = {
        "profile": PROFILE,
        "v": STATE_VERSION,
        "phase": session.phase.value,
        "pin": None if session.pin is None else _b64(session.pin),
        "keys": None
        if keys is None
        else [key.hex() for key in (keys.d2s_enc, keys.d2s_mac, keys.s2d_enc, keys.s2d_mac)],
        "rx": session.rx_seq,
        "tx": session.tx_seq,
        "cache": [[e.seq, _b64(e.tag), _b64(e.reply)] for e in session.cache],
        "fail": session.failures,
        "touched": session.touched,
    }
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("ascii")


def _get(
    obj: Dict[str, Any], name: str, kind: Union[type, Tuple[type, ...]], optional: bool = False
) -> Any:
    value = obj.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StateError(f"state field {name!r} has the wrong type")
    return value


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise StateError("state holds a non-string where base64 is expected")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise StateError("state holds invalid base64") from None


def _keys(value: Optional[List[Any]]) -> Optional[SessionKeys]:
    if value is None:
        return None
    try:
        return SessionKeys(*(bytes.fromhex(key) for key in value))
    except (TypeError, ValueError):
        raise StateError("state holds invalid session keys") from None


def _cache(value: List[Any]) -> Tuple[CacheEntry, ...]:
    entries = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 3 and type(item[0]) is int):
            raise StateError("state holds an invalid cache entry")
        entries.append(CacheEntry(item[0], _unb64(item[1]), _unb64(item[2])))
    return tuple(entries)


def load(blob: Optional[bytes]) -> Session:
    """
    The session stored in ``blob``.

    ``None``, an empty blob and another profile's blob (a device switched
    between transports) all give a new session with no pin.

    :raises StateError: the blob is corrupt or was written by a newer pushd.
    """
    if not blob:
        return Session()
    try:
        obj = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StateError("state is not JSON") from None
    if not isinstance(obj, dict):
        raise StateError("state is not a JSON object")
    if obj.get("profile") != PROFILE:
        return Session()
    if obj.get("v") != STATE_VERSION:
        raise StateError(f"state version {obj.get('v')!r} is not {STATE_VERSION}")
    try:
        phase = Phase(obj.get("phase"))
        touched = _get(obj, "touched", (int, float), optional=True)
        pin = obj.get("pin")
        return Session(
            phase=phase,
            pin=None if pin is None else _unb64(pin),
            keys=_keys(_get(obj, "keys", list, optional=True)),
            rx_seq=_get(obj, "rx", int),
            tx_seq=_get(obj, "tx", int),
            cache=_cache(_get(obj, "cache", list)),
            failures=_get(obj, "fail", int),
            touched=None if touched is None else float(touched),
        )
    except ValueError as e:
        raise StateError(f"state is inconsistent: {e}") from None


def describe(session: Session) -> Dict[str, Any]:
    """JSON-ready facts about the session for operators: never a key."""
    return {
        "profile": PROFILE,
        "phase": session.phase.value,
        "pinned_key": None if session.pin is None else fingerprint(session.pin),
        "rx_seq": session.rx_seq,
        "tx_seq": session.tx_seq,
        "failures": session.failures,
        "touched": session.touched,
    }
