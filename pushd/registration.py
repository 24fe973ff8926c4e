# -*- test-case-name: tests.test_web_push3 -*-
"""
PUSH 3.x registration: the registry step, the configuration with its
SessionID, the token cookie, and the server time (security-push notes §2, §5).

A 3.x terminal that is not approved may still say what it is (its registry
body is stored, so the operator sees its capabilities) but is refused with
406.  An approved one gets a RegistryCode, kept across re-registrations, and
a new SessionID at every registration and configuration request.  Once a
device has sent a token that matches, every later token must match (sticky),
so devices that never send tokens are not locked out.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Optional, Tuple

from twisted.logger import Logger

from pushd._deferred import deferred
from pushd.config import Config
from pushd.errors import DeviceNotAuthorized
from pushd.model import Device, DeviceUpdate
from pushd.protocol.push3 import (
    REGISTRY_REFUSED,
    handshake_reply,
    new_registry_code,
    new_session_id,
    parse_cookie,
    parse_registry,
    push_options,
    push_reply,
    registry_reply,
    rtdata_time,
    session_cookie,
    token_valid,
)
from pushd.protocol.text import codec_for
from pushd.registry import DeviceRegistry

__all__ = ["PRIVATE_INFO", "Registrar", "timezone_minutes"]

#: Keys of ``Device.info`` holding registration secrets (never shown by the API).
CODE, SESSION, TOKEN_OK = "push3.registry_code", "push3.session_id", "push3.token_ok"
PRIVATE_INFO = (CODE, SESSION, TOKEN_OK)


def timezone_minutes(value: str, default: int = 0) -> int:
    """A ``TimeZone`` option (spec 5: hours, or minutes beyond ±60) in minutes."""
    try:
        number = int(value.strip())
    except ValueError:
        return default
    return number if abs(number) > 60 else number * 60


class Registrar:
    """Registration, configuration and token checks of 3.x terminals."""

    log = Logger()

    def __init__(
        self,
        registry: DeviceRegistry,
        clock: Any,
        config: Config,
        randbytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._config = config
        self._random = randbytes

    def _settings(self, device: Device) -> dict:
        return {k: v for k, v in device.settings.items() if k != "TimeZone"}

    async def _new_session(self, device: Device, code: str) -> Tuple[Device, str]:
        session = new_session_id(self._random)
        device = await self._registry.update(
            device.sn, DeviceUpdate(info={CODE: code, SESSION: session})
        )
        return device, session

    @deferred
    async def handshake(self, device: Device) -> bytes:
        """
        ``GET /iclock/cdata?options=all`` of a 3.x device: ``OK`` until it is
        approved and registered, then the configuration with a new SessionID.
        """
        code = device.info.get(CODE)
        if device.state != "approved" or not code:
            return handshake_reply(None)
        device, session = await self._new_session(device, code)
        return handshake_reply(code, push_options(session, device.options, self._settings(device)))

    @deferred
    async def register(self, device: Device, body: bytes) -> Tuple[int, bytes, Optional[bytes]]:
        """
        ``POST /iclock/registry``: store what the device says it can do; an
        approved device gets its RegistryCode.

        :returns: ``(status, body, Set-Cookie value or None)``.
        """
        capabilities = parse_registry(body, codec_for(device.language))
        device = await self._registry.record_options(device, capabilities)
        if device.state != "approved":
            self.log.info("{sn} registered but is not approved: 406", sn=device.sn)
            return 406, REGISTRY_REFUSED, None
        code = device.info.get(CODE) or new_registry_code(self._random)
        device, session = await self._new_session(device, code)
        return 200, registry_reply(code), session_cookie(session)

    @deferred
    async def push(self, device: Device) -> Tuple[int, bytes, Optional[bytes]]:
        """``GET|POST /iclock/push``: the configuration (§2.3), or 406 before registration."""
        code = device.info.get(CODE)
        if not code:
            return 406, REGISTRY_REFUSED, None
        device, session = await self._new_session(device, code)
        options = push_options(session, device.options, self._settings(device))
        return 200, push_reply(options), session_cookie(session)

    @deferred
    async def check_token(self, device: Device, cookie: Optional[bytes]) -> None:
        """
        Check the ``token`` cookie of a request, if it carries one.

        :raises DeviceNotAuthorized: a wrong token from a device that already
            sent a right one (it must register again).
        """
        if not cookie:
            return
        cookies = parse_cookie(cookie)
        token = cookies.get("token")
        code = device.info.get(CODE)
        if not token or not code:
            return
        good = token_valid(
            token, code, device.sn, device.info.get(SESSION), cookies.get("timestamp")
        )
        if good:
            if device.info.get(TOKEN_OK) != "1":
                await self._registry.update(device.sn, DeviceUpdate(info={TOKEN_OK: "1"}))
            return
        if device.info.get(TOKEN_OK) == "1":
            self.log.warn("{sn}: token does not match its registration; refused", sn=device.sn)
            raise DeviceNotAuthorized()

    def rtdata(self, device: Device, kind: str) -> bytes:
        """``GET /iclock/rtdata?type=time`` (§5.2): the server time for the device's zone."""
        if kind.lower() != "time":
            return b"OK"
        default = timezone_minutes(self._config.option("TimeZone", "0"))
        zone = timezone_minutes(device.settings.get("TimeZone", ""), default)
        return rtdata_time(self._clock.seconds(), zone)
