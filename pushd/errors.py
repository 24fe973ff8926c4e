# -*- test-case-name: tests.test_protocol_cdata -*-
"""
The error hierarchy.  Each error that reaches a device maps to an HTTP status
and a one-line, device-visible reason; nothing else (never a traceback).
"""

from __future__ import annotations

__all__ = [
    "DeviceNotAuthorized",
    "ProtocolError",
    "PushdError",
    "RequestTooLarge",
    "StoreError",
    "UnsupportedRequest",
]


class PushdError(Exception):
    """Base class: ``status`` is the HTTP status, ``str(self)`` the one-line reason."""

    status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(reason.split()) or self.__class__.__name__)

    @property
    def reason(self) -> str:
        return str(self.args[0])


class ProtocolError(PushdError):
    """The request is malformed: HTTP 400.  The only exception parsers raise."""

    status = 400


class UnsupportedRequest(PushdError):
    """A well-formed request pushd does not serve (unknown table...): HTTP 404."""

    status = 404


class DeviceNotAuthorized(PushdError):
    """The device is pending approval, blocked or failed its key check: HTTP 401."""

    status = 401

    def __init__(self, reason: str = "Device not authorized") -> None:
        super().__init__(reason)


class RequestTooLarge(PushdError):
    """An upload over a configured limit (records, photo size): HTTP 413."""

    status = 413


class StoreError(PushdError):
    """The store could not commit or read: HTTP 503, so the device keeps its data and retries."""

    status = 503
