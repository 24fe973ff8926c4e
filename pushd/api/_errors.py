# -*- test-case-name: tests.test_api -*-
"""The API's own refusals, each a :class:`~pushd.errors.PushdError` with its HTTP status."""

from __future__ import annotations

from pushd.errors import PushdError

__all__ = ["BadRequest", "MethodNotAllowed", "NotFound", "Unauthorized"]


class BadRequest(PushdError):
    """The request's parameters or body are invalid: HTTP 400."""

    status = 400


class Unauthorized(PushdError):
    """Missing or wrong bearer token: HTTP 401."""

    status = 401

    def __init__(self, reason: str = "wrong or missing token") -> None:
        super().__init__(reason)


class NotFound(PushdError):
    """No such path, device, command, user or photo: HTTP 404."""

    status = 404

    def __init__(self, reason: str = "not found") -> None:
        super().__init__(reason)


class MethodNotAllowed(PushdError):
    """The path exists but not with this method: HTTP 405."""

    status = 405
