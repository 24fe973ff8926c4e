# -*- test-case-name: tests.test_web_iclock -*-
"""
Who may talk to us: registration, approval, and what we know of each device.

Every device request passes :meth:`DeviceRegistry.admit` (or
:meth:`~DeviceRegistry.handshake`).  An unknown serial number is recorded
(pending under ``--registration approve``, approved under ``open`` or when
listed with ``--allow``); anything but an approved device is refused with
:class:`~pushd.errors.DeviceNotAuthorized`.

Devices are cached in memory.  On a store of its own this process is the
only writer of device state and every write goes through here, so the cache
is kept for good; on a store shared with other processes (``refresh``), a
cached device is read again once it is ``refresh`` seconds old (0: on every
request), so an approval, a block or a setting changed through another node
reaches this one within that time.  ``last_seen`` changes on every poll, so it is coalesced
and written in one transaction per ``seen_flush_seconds`` instead of once
per request.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from datetime import datetime, timezone
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from pushd.errors import DeviceNotAuthorized, UnsupportedRequest
from pushd.interfaces import IStore
from pushd.model import Device, DeviceUpdate
from pushd.protocol.records import DeviceInfo, Handshake
from pushd.protocol.replies import hybrid_support

__all__ = ["DeviceRegistry", "utc_now"]


def utc_now(clock: IReactorTime) -> str:
    """The clock's time as ``YYYY-MM-DDTHH:MM:SSZ``."""
    moment = datetime.fromtimestamp(clock.seconds(), tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class DeviceRegistry:
    """Admission of devices and the write path of device state."""

    log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        registration: str = "approve",
        allow: Iterable[str] = (),
        server_bio_support: Tuple[str, str] = ("", ""),
        refresh: Optional[float] = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._open = registration == "open"
        self._allow = frozenset(allow)
        self._bio_data, self._bio_photo = server_bio_support
        self._devices: Dict[str, Device] = {}
        self._refresh = refresh
        self._read_at: Dict[str, float] = {}  # when each device was last read
        self._seen: Dict[str, Tuple[str, str]] = {}

    def now(self) -> str:
        return utc_now(self._clock)

    def _stale(self, sn: str) -> bool:
        if self._refresh is None:
            return False
        return self._clock.seconds() - self._read_at.get(sn, 0.0) >= self._refresh

    def _keep(self, device: Device) -> None:
        self._devices[device.sn] = device
        self._read_at[device.sn] = self._clock.seconds()

    async def _get(self, sn: str, ip: str) -> Device:
        device = self._devices.get(sn)
        if device is None or self._stale(sn):
            device = await self._store.get_device(sn)
            if device is None:
                device = await self._register(sn)
            self._keep(device)
        if device.state == "pending" and sn in self._allow:
            device = await self._update(sn, DeviceUpdate(state="approved"))
        self._seen[sn] = (ip, self.now())
        return device

    async def _register(self, sn: str) -> Device:
        state = "approved" if self._open or sn in self._allow else "pending"
        device = await self._store.add_device(sn, state, self.now())
        if device.state == "pending":
            self.log.warn("Device {sn} is pending approval", sn=sn)
        else:
            self.log.info("Device {sn} registered", sn=sn)
        return device

    async def _update(self, sn: str, update: DeviceUpdate) -> Device:
        device = await self._store.update_device(sn, update)
        if device is None:  # pragma: no cover - devices are never deleted here
            raise DeviceNotAuthorized()
        self._keep(device)
        return device

    @staticmethod
    def _require_approved(device: Device) -> Device:
        if device.state != "approved":
            raise DeviceNotAuthorized()
        return device

    async def admit(self, sn: str, ip: str) -> Device:
        """
        The device behind a request, if it may be served.

        :raises DeviceNotAuthorized: pending or blocked.
        :raises StoreError: the store is unavailable.
        """
        return self._require_approved(await self._get(sn, ip))

    async def contact(self, sn: str, ip: str) -> Device:
        """The device behind a request, recorded if new, approved or not."""
        return await self._get(sn, ip)

    async def handshake(
        self, handshake: Handshake, ip: str, require_approval: bool = True
    ) -> Device:
        """
        Admit a device at the initialization exchange and record what it told us (spec 5).

        :param require_approval: refuse devices not approved (3.x devices may
            go on to register, and are refused there).
        """
        device = await self._get(handshake.sn, ip)
        if device.pushcommkey and not hmac.compare_digest(
            handshake.pushcommkey.encode("utf-8"), device.pushcommkey.encode("utf-8")
        ):
            self.log.warn(
                "{sn}: handshake {how} the pushcommkey the operator set; refused",
                sn=handshake.sn,
                how="with a different key than" if handshake.pushcommkey else "without",
            )
            raise DeviceNotAuthorized()
        info: Dict[str, str] = {}
        if handshake.pushcommkey:
            info["pushcommkey"] = "sent"  # the value is a secret: never stored where it shows
        if handshake.push_options_flag:
            info["PushOptionsFlag"] = handshake.push_options_flag
        update = DeviceUpdate(
            last_seen=self.now(),
            ip=ip,
            push_version=handshake.push_version or None,
            language=handshake.language or None,
            device_type=handshake.device_type or None,
            info=info or None,
        )
        device = await self._update(handshake.sn, update)
        self._seen.pop(handshake.sn, None)
        return self._require_approved(device) if require_approval else device

    def record_info(self, device: Device, info: DeviceInfo) -> Deferred[Device]:
        """Store the ``INFO=`` values of a poll (spec 9)."""
        values = {
            "firmware": info.firmware,
            "user_count": info.user_count,
            "fp_count": info.fp_count,
            "att_count": info.att_count,
            "ip": info.ip,
            "fp_version": info.fp_version,
            "face_version": info.face_version,
            "face_enroll_count": info.face_enroll_count,
            "face_count": info.face_count,
            "functions": info.functions,
            "extra": ",".join(info.extra),
        }
        return Deferred.fromCoroutine(
            self._update(device.sn, DeviceUpdate(firmware=info.firmware, info=values))
        )

    def record_options(self, device: Device, options: Mapping[str, str]) -> Deferred[Device]:
        """
        Store a ``table=options`` push (spec 8) and the hybrid identification
        result of spec 3.1: the AND of the device's and the server's
        MultiBioDataSupport / MultiBioPhotoSupport lists.
        """
        merged = dict(device.options)
        merged.update(options)
        hybrid: Dict[str, str] = {}
        data = merged.get("MultiBioDataSupport")
        photo = merged.get("MultiBioPhotoSupport")
        if data is not None:
            hybrid["MultiBioDataSupport"] = hybrid_support(data, self._bio_data)
        if photo is not None:
            hybrid["MultiBioPhotoSupport"] = hybrid_support(photo, self._bio_photo)
        update = DeviceUpdate(options=dict(options), hybrid=hybrid or None)
        return Deferred.fromCoroutine(self._update(device.sn, update))

    def update(self, sn: str, update: DeviceUpdate) -> Deferred[Device]:
        """
        Change a device as the operator asks (state, alias, group, settings,
        pushcommkey); the cache follows.

        :raises UnsupportedRequest: the device is unknown.
        """
        return Deferred.fromCoroutine(self._operator_update(sn, update))

    async def _operator_update(self, sn: str, update: DeviceUpdate) -> Device:
        device = await self._store.update_device(sn, update)
        if device is None:
            raise UnsupportedRequest(f"unknown device {sn}")
        self._keep(device)
        return device

    def set_state(self, sn: str, state: str) -> Deferred[Device]:
        """Approve, block or return a device to pending (the operator's decision)."""
        return Deferred.fromCoroutine(self._update(sn, DeviceUpdate(state=state)))

    def flush_seen(self) -> Deferred[None]:
        """Write the coalesced ``last_seen``/``ip`` of every device heard since the last flush."""
        if not self._seen:
            return succeed(None)
        batch = [(sn, ip, when) for sn, (ip, when) in self._seen.items()]
        self._seen.clear()
        for sn, ip, when in batch:
            device = self._devices.get(sn)
            if device is not None:
                self._devices[sn] = _seen(device, ip, when)
        d = self._store.record_seen(batch)

        def keep_for_next_flush(failure: object) -> None:
            for sn, ip, when in batch:
                self._seen.setdefault(sn, (ip, when))
            self.log.warn("Could not record last-seen times: {failure}", failure=failure)

        d.addErrback(keep_for_next_flush)
        return d

    def known(self) -> List[Device]:
        """The devices heard from since start (for live gauges; no store call)."""
        return list(self._devices.values())

    def cached(self, sn: str) -> Optional[Device]:
        """The cached device, with its latest unflushed contact."""
        return self._devices.get(sn)


def _seen(device: Device, ip: str, when: str) -> Device:
    return replace(device, ip=ip, last_seen=max(when, device.last_seen))
