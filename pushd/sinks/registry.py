# -*- test-case-name: tests.test_sinks -*-
"""
Building event sinks from ``--sink`` URLs.

Sink kinds are Twisted plugins: module-level objects providing
``twisted.plugin.IPlugin`` and :class:`pushd.interfaces.IEventSinkFactory`
in modules of the ``pushd.plugins`` package.  The built-in ones (webhook,
MQTT, JSON lines) are in ``pushd/plugins/pushd_sinks.py``; a third party
adds a scheme by installing another module there.
"""

from __future__ import annotations

from typing import Any, Dict
from urllib.parse import urlsplit

from twisted.plugin import getPlugins

import pushd.plugins
from pushd.interfaces import IEventSink, IEventSinkFactory
from pushd.sinks import sink_name

__all__ = ["build_sink", "scheme_of", "sink_factories"]


def sink_factories() -> Dict[str, IEventSinkFactory]:
    """
    Every installed sink factory, by the URL schemes it serves.

    :raises ValueError: two plugins claim the same scheme.
    """
    found: Dict[str, IEventSinkFactory] = {}
    for factory in getPlugins(IEventSinkFactory, pushd.plugins):
        for scheme in factory.schemes:
            scheme = scheme.lower()
            other = found.get(scheme)
            if other is not None and other is not factory:
                raise ValueError(
                    f"two event sink plugins serve {scheme!r}: {other.name!r} and {factory.name!r}"
                )
            found[scheme] = factory
    return found


def scheme_of(url: str) -> str:
    """The scheme that picks a sink's factory: ``-`` for ``-``, else the URL's, in lower case."""
    if url == "-":
        return "-"
    try:
        return urlsplit(url).scheme.lower()
    except ValueError:
        return ""


def build_sink(url: str, secret: str, reactor: Any) -> IEventSink:
    """
    Build the sink of one ``--sink`` value; its ``name`` is the URL without
    any password.

    :param secret: ``--sink-secret`` (required by webhooks), possibly empty.
    :raises ValueError: an unknown scheme or an unusable URL or secret; the
        message names the sink (without its password) and says what is expected.
    """
    factories = sink_factories()
    factory = factories.get(scheme_of(url))
    if factory is None:
        known = ", ".join(f"{s}:" if s != "-" else s for s in sorted(factories)) or "none"
        raise ValueError(
            f"unknown event sink {sink_name(url)!r}: use https://..., http://...,"
            f" mqtt://host:port/prefix, file:///path.jsonl or - (installed: {known})"
        )
    return factory.build(url, secret, reactor)
