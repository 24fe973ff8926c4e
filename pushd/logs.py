# -*- test-case-name: tests.test_loopback -*-
"""
Logs: one structured event per device request (SN, method, path with secrets
redacted, status, duration), and JSON lines for log shippers with
``--log-format json``.
"""

from __future__ import annotations

import sys
from typing import IO, Any, Optional

from twisted.logger import ILogObserver, Logger, jsonFileLogObserver

__all__ = ["json_observer", "log_request"]

_log = Logger(namespace="pushd.access")


def log_request(
    sn: str, method: str, path: str, status: int, duration: float, ip: str, size: int
) -> None:
    """Emit the event of one device request."""
    _log.info(
        "{ip} {method} {path} {status} {size}B {duration_ms}ms (SN {sn})",
        ip=ip,
        method=method,
        path=path,
        status=status,
        size=size,
        duration_ms=round(duration * 1000, 1),
        sn=sn,
    )


def json_observer(stream: Optional[IO[str]] = None) -> Any:
    """
    A log observer writing one JSON object per event.  Also usable as
    ``twistd --logger pushd.logs.json_observer``.
    """
    observer = jsonFileLogObserver(stream if stream is not None else sys.stdout)
    assert ILogObserver.providedBy(observer)
    return observer
