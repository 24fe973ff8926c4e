# -*- test-case-name: tests.test_sinks -*-
"""
The JSON-lines sink: one event object per line, for log shippers (Vector,
Fluent Bit, Filebeat, Promtail...) and for watching events go by.

* ``file:///var/log/pushd/events.jsonl``: lines appended to the file
  (created if missing, its directory must exist) as UTF-8, and ``fsync``\\ ed
  before the batch counts as delivered.  The writing happens in the
  reactor's thread pool, one batch at a time, never in the reactor thread.
  When the file is renamed or removed (log rotation), the next batch opens
  a new one at the path.  A write that fails leaves no partial line: the
  file is cut back to where the batch started.
* ``-``: lines written to the standard output the process had when the
  sink was built, flushed; ASCII only (``\\uXXXX`` escapes), so any
  terminal encoding reads them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any, Mapping, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import LoggingFile
from twisted.plugin import IPlugin
from zope.interface import implementer

from pushd.interfaces import IEventSink, IEventSinkFactory, SinkRejected
from pushd.sinks import sink_name

__all__ = ["JsonLinesSink", "JsonLinesSinkFactory", "path_of"]


def path_of(url: str) -> str:
    """
    The file a ``file:`` URL names: ``file:///abs/path.jsonl``,
    ``file://localhost/abs/path.jsonl`` or ``file:relative/path.jsonl``
    (percent-decoded).

    :raises ValueError: another host, no path, or a directory that does not exist.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise ValueError(f"invalid file sink URL {sink_name(url)}: use file:///path/events.jsonl")
    path = unquote(parts.path)
    if not path or path.endswith("/") or parts.query or parts.fragment:
        raise ValueError(f"invalid file sink URL {sink_name(url)}: use file:///path/events.jsonl")
    if os.path.isdir(path):
        raise ValueError(f"the file sink {url} names a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"the file sink {url}: no directory {directory}")
    return path


class _File:
    """Appends and syncs; used by one thread at a time."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: Optional[int] = None
        self._identity: Tuple[int, int] = (0, 0)

    def _open(self) -> int:
        if self._fd is not None:
            try:
                st = os.stat(self.path)
                same = (st.st_dev, st.st_ino) == self._identity
            except FileNotFoundError:
                same = False
            if same:
                return self._fd
            self.close()  # rotated: go on in a new file
        existed = os.path.exists(self.path)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        st = os.fstat(fd)
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)
        if not existed:  # make the new directory entry durable too
            directory = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return fd

    def write(self, data: bytes) -> None:
        fd = self._open()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


class _Stream:
    """Writes text to a stream and flushes it."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, data: bytes) -> None:
        self.stream.write(data.decode("ascii"))
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


@implementer(IEventSink)
class JsonLinesSink:
    """
    Write events as JSON lines to a file (``path``) or to ``stream``.

    :param url: the ``--sink`` value, for :attr:`name`.
    :param reactor: an ``IReactorThreads``; the writes happen in its thread pool.
    :param path: the file to append to.
    :param stream: the text stream to write to, when there is no ``path``.
    """

    def __init__(
        self,
        url: str,
        reactor: Any,
        path: Optional[str] = None,
        stream: Optional[IO[str]] = None,
    ) -> None:
        self.name = sink_name(url)
        self._reactor = reactor
        self._ascii = path is None
        if path is not None:
            self._out: Any = _File(path)
        elif stream is not None:
            self._out = _Stream(stream)
        else:
            raise ValueError("a JSON-lines sink needs a path or a stream")
        self._lock = DeferredLock()  # one batch at a time, in order
        self._closed = False

    def __repr__(self) -> str:
        return f"<JsonLinesSink {self.name}>"

    def _in_thread(self, f: Any, *args: Any) -> Deferred[None]:
        return self._lock.run(
            deferToThreadPool, self._reactor, self._reactor.getThreadPool(), f, *args
        )

    def deliver(self, events: Sequence[Mapping[str, Any]]) -> Deferred[None]:
        """
        Append one line per event.

        :returns: Deferred firing once the lines are written (and, for a
            file, synced to disk); failing with the ``OSError`` of a failed
            write, with :class:`SinkRejected` for an event that cannot be JSON.
        """
        if self._closed:
            return Deferred.fromCoroutine(self._raise(ValueError(f"{self.name} is closed")))
        if not events:
            return succeed(None)
        try:
            data = b"".join(
                json.dumps(
                    event, ensure_ascii=self._ascii, separators=(",", ":"), allow_nan=False
                ).encode("utf-8")
                + b"\n"
                for event in events
            )
        except (TypeError, ValueError) as e:
            reason = " ".join(f"{self.name}: events are not JSON: {e}".split())
            return Deferred.fromCoroutine(self._raise(SinkRejected(reason)))
        return self._in_thread(self._out.write, data)

    async def _raise(self, error: Exception) -> None:
        raise error

    def close(self) -> Deferred[None]:
        """Close the file (stdout is only flushed), after the batches in progress."""
        if self._closed:
            return succeed(None)
        self._closed = True
        return self._in_thread(self._out.close)


def _stdout() -> IO[str]:
    """The standard output, not twistd's log disguised as it."""
    stream: Optional[IO[str]] = sys.stdout
    if isinstance(stream, LoggingFile) or stream is None:
        stream = sys.__stdout__
    if stream is None:
        raise ValueError("the - sink needs a standard output, and this process has none")
    return stream


@implementer(IPlugin, IEventSinkFactory)
class JsonLinesSinkFactory:
    """JSON lines: ``file:///path.jsonl`` and ``-`` (stdout)."""

    name = "jsonlines"
    description = "one JSON event per line, to a file (file:///path.jsonl) or stdout (-)"
    schemes = ("file", "-")

    def build(self, url: str, secret: str, reactor: Any) -> IEventSink:
        """
        ``-`` writes to the process's standard output: ``sys.stdout``, or
        ``sys.__stdout__`` once twistd's logging has redirected
        ``sys.stdout`` into the log.

        :raises ValueError: an unusable URL.
        """
        if url == "-":
            return JsonLinesSink(url, reactor, stream=_stdout())
        return JsonLinesSink(url, reactor, path=path_of(url))
