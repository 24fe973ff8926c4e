"""
Event sinks (CONTRACT 4): where pushd's dispatcher delivers events.

* :mod:`pushd.sinks.webhook`: ``https://...`` and ``http://...``, one signed
  POST per batch;
* :mod:`pushd.sinks.mqtt`: ``mqtt://host:port/prefix`` (``mqtts://`` for
  TLS), one QoS 1 message per event;
* :mod:`pushd.sinks.jsonlines`: ``file:///path.jsonl`` and ``-`` (stdout),
  one JSON object per line.

Each is an :class:`~pushd.interfaces.IEventSink` built by an
:class:`~pushd.interfaces.IEventSinkFactory` plugin
(``pushd/plugins/pushd_sinks.py``); :func:`pushd.sinks.registry.build_sink`
picks the factory by the URL scheme.  This module imports no Twisted.
"""

from __future__ import annotations

from typing import List
from urllib.parse import urlsplit, urlunsplit

__all__: List[str] = ["sink_name"]


def sink_name(url: str) -> str:
    """
    The stable name of the sink configured with ``url``: the URL itself,
    without the password of its user information, if any
    (``mqtt://bob:pw@host/p`` -> ``mqtt://bob@host/p``).

    The dispatcher keeps each sink's position under this name, so it must
    not change while the sink's configuration does not.
    """
    if url == "-":
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))
