# -*- test-case-name: tests.test_web_iclock -*-
"""
Fakes for testing pushd and code built on it, shipped with the package.

:class:`ImmediateReactor` is a :class:`~twisted.internet.task.Clock` whose
"threads" run at once, so the whole server can be driven in memory through
``treq.testing.StubTreq`` with no real reactor, no sockets and no sleeping.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from pushd.config import Config
from pushd.interfaces import IStore, IVerifier
from pushd.service import Application, build_application

__all__ = ["ImmediateReactor", "TestServer"]


class _ImmediatePool:
    """A thread pool that runs each job in the calling thread, at once."""

    def callInThreadWithCallback(
        self, on_result: Callable[[bool, Any], None], fn: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        try:
            result = fn(*args, **kw)
        except BaseException:
            on_result(False, Failure())
        else:
            on_result(True, result)


class ImmediateReactor(Clock):
    """A deterministic clock that also runs thread-pool jobs synchronously."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        super().__init__()
        self.advance(now)
        self._pool = _ImmediatePool()

    def getThreadPool(self) -> _ImmediatePool:
        return self._pool

    def callFromThread(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        fn(*args, **kw)


class TestServer:
    """A whole pushd application, in memory, with a treq client talking to it."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        config: Config,
        store: IStore,
        verifier: Optional[IVerifier] = None,
        reactor: Optional[ImmediateReactor] = None,
        plugins: Sequence[Any] = (),
        sinks: Sequence[Any] = (),
    ) -> None:
        self.reactor = reactor or ImmediateReactor()
        self.app: Application = build_application(
            config, self.reactor, store, verifier, plugins, sinks
        )
        self.store = store
        self.treq = StubTreq(self.app.root)
