# -*- test-case-name: tests.test_web_crypto -*-
"""
Crypto transports at work: each device's transport (by name, ``plain`` by
default, ``zkx1`` when the operator enables it), its state kept in the store,
and the calls of one device made one at a time.

The transports are pure and hold no per-device state; this service reads a
device's state blob, calls the transport in a thread (RSA and key derivation
take milliseconds), and stores whatever state comes back, including the one
an error carries (a counted failure, a dropped session).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from pushd._deferred import deferred
from pushd.crypto import CryptoError, ExchangeNotSupported, KeyMismatch, Unwrapped
from pushd.crypto.registry import transport_factories
from pushd.errors import ProtocolError
from pushd.interfaces import ICryptoTransport, ICryptoTransportFactory, IStore
from pushd.model import Device

__all__ = ["CryptoSessions"]

T = TypeVar("T")


class CryptoSessions:
    """Per-device crypto state, through the transport each device uses."""

    log = Logger()

    def __init__(self, store: IStore, reactor: Any, data_dir: str) -> None:
        self._store = store
        self._reactor = reactor
        self._data_dir = data_dir
        self._factories: Dict[str, ICryptoTransportFactory] = transport_factories()
        self._transports: Dict[str, ICryptoTransport] = {}
        self._locks: Dict[str, DeferredLock] = {}

    def names(self) -> List[str]:
        """The transports installed (plugins), sorted."""
        return sorted(self._factories)

    def _in_thread(self, fn: Callable[..., T], *args: Any) -> Deferred[T]:
        return deferToThreadPool(self._reactor, self._reactor.getThreadPool(), fn, *args)

    async def transport(self, name: str) -> ICryptoTransport:
        """
        The transport called ``name``, built on first use (in a thread: the
        ZKX1 server key is generated then, once).

        :raises ProtocolError: no such transport is installed.
        """
        transport = self._transports.get(name)
        if transport is None:
            factory = self._factories.get(name)
            if factory is None:
                raise ProtocolError(f"no crypto transport {name!r} (installed: {self.names()})")
            transport = await self._in_thread(factory.build, self._data_dir)
            self._transports[name] = transport
        return transport

    @deferred
    async def fingerprint(self) -> Optional[str]:
        """The SHA-256 fingerprint of the ZKX1 server key, for clients to pin."""
        if "zkx1" not in self._factories:
            return None
        return str(getattr(await self.transport("zkx1"), "fingerprint", "")) or None

    async def _locked(self, sn: str, work: Callable[[], Any]) -> Any:
        lock = self._locks.setdefault(sn, DeferredLock())
        await lock.acquire()
        try:
            return await work()
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._locks.pop(sn, None)

    async def _call(
        self, device: Device, step: Callable[[ICryptoTransport, Optional[bytes]], Any]
    ) -> Any:
        """Run ``step(transport, state)`` in a thread, storing the state any error carries."""
        transport = await self.transport(device.crypto)
        state = await self._store.crypto_state(device.sn)
        try:
            return await self._in_thread(step, transport, state)
        except CryptoError as error:
            if error.state is not None:
                await self._store.set_crypto_state(device.sn, error.state)
            raise

    @deferred
    async def handshake(self, device: Device) -> Sequence[Tuple[str, str]]:
        """
        A new initialization exchange (spec 5): the session is discarded (the
        pinned device key stays).

        :returns: the options-block pairs of the device's transport.
        """

        async def work() -> Sequence[Tuple[str, str]]:
            transport = await self.transport(device.crypto)
            state = await self._store.crypto_state(device.sn)
            if state is not None or device.crypto != "plain":
                await self._store.set_crypto_state(device.sn, transport.restart(state))
            return transport.options()

        return await self._locked(device.sn, work)

    @deferred
    async def exchange(self, device: Device, kind: str, body: bytes) -> bytes:
        """
        One step of the key and factor exchange (spec 6, 7).

        :raises CryptoError: 404 while the device is not ZKX1-enabled
            (logged with what the device sent), 409 out of order, 403 for a
            device key that is not the pinned one, 400 otherwise.
        """
        now = self._reactor.seconds()

        async def work() -> bytes:
            def step(transport: ICryptoTransport, state: Optional[bytes]) -> Tuple[bytes, bytes]:
                return transport.exchange(device.sn, kind, body, state, now)

            reply, state = await self._call(device, step)
            await self._store.set_crypto_state(device.sn, state)
            return reply

        try:
            return await self._locked(device.sn, work)
        except ExchangeNotSupported as error:
            self.log.warn(
                "{sn} asked for the encryption exchange ({kind}, {size} bytes) but uses the"
                " {transport} transport: {detail}",
                sn=device.sn,
                kind=kind,
                size=len(body),
                transport=device.crypto,
                detail=error.detail,
            )
            raise
        except KeyMismatch:
            self.log.error(
                "{sn} presented a device key that is not the one pinned for it", sn=device.sn
            )
            raise

    @deferred
    async def unwrap(self, device: Device, table: str, body: bytes) -> Optional[Unwrapped]:
        """
        Open an encrypted upload; ``None`` when ``table`` is not encrypted for
        this device.  The new state is stored by :meth:`remember`, after the
        upload was committed.

        :raises CryptoError: as the transport decides (no session, replay, bad tag or CRC).
        """
        transport = await self.transport(device.crypto)
        if table.upper() not in transport.encrypted_tables:
            return None
        now = self._reactor.seconds()

        def step(transport: ICryptoTransport, state: Optional[bytes]) -> Unwrapped:
            return transport.unwrap(device.sn, body, state, now)

        return await self._locked(device.sn, lambda: self._call(device, step))

    @deferred
    async def remember(self, device: Device, unwrapped: Unwrapped, reply: bytes) -> None:
        """Keep the session state after the upload was stored and answered ``reply``."""
        transport = await self.transport(device.crypto)
        state = transport.remember(unwrapped.state, unwrapped.seq, unwrapped.tag, reply)
        await self._store.set_crypto_state(device.sn, state)

    @deferred
    async def reset(self, sn: str) -> None:
        """Forget a device's crypto state (its transport changed)."""
        await self._store.set_crypto_state(sn, None)
