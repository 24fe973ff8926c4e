"""One helper: public service methods return Deferreds, whatever they are written as."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, Coroutine, TypeVar

from twisted.internet.defer import Deferred

__all__ = ["deferred"]

T = TypeVar("T")


def deferred(method: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., Deferred[T]]:
    """Make an ``async def`` return a Deferred, as every pushd interface does."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Deferred[T]:
        return Deferred.fromCoroutine(method(*args, **kwargs))

    return wrapper
