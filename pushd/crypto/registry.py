# -*- test-case-name: tests.test_crypto_plugins -*-
"""
Finding crypto transports by name.

Transports are Twisted plugins: module-level objects providing
``twisted.plugin.IPlugin`` and :class:`pushd.interfaces.ICryptoTransportFactory`
in modules of the ``pushd.plugins`` namespace package.  The built-in ones
(``plain``, ``zkx1``) are in ``pushd/plugins/pushd_crypto.py``; a third
party adds its own by installing another module there (``pushd/plugins``
has no ``__init__.py``, exactly like ``twisted/plugins``).  Twisted caches
what it found in ``pushd/plugins/dropin.cache`` when the directory is
writable.
"""

from __future__ import annotations

from typing import Dict

from twisted.plugin import getPlugins

import pushd.plugins
from pushd.interfaces import ICryptoTransport, ICryptoTransportFactory

__all__ = ["build_transport", "transport_factories"]


def transport_factories() -> Dict[str, ICryptoTransportFactory]:
    """
    Every installed transport factory, by name.

    :raises ValueError: two plugins claim the same name.
    """
    found: Dict[str, ICryptoTransportFactory] = {}
    for factory in getPlugins(ICryptoTransportFactory, pushd.plugins):
        name = factory.name
        if name in found and found[name] is not factory:
            raise ValueError(f"two crypto transport plugins are named {name!r}")
        found[name] = factory
    return found


def build_transport(name: str, data_dir: str) -> ICryptoTransport:
    """
    Build the transport called ``name``, its keys in ``data_dir``.

    :raises KeyError: no transport has that name (the message lists those that exist).
    :raises KeyStoreError: its keys cannot be created or read.
    """
    factories = transport_factories()
    try:
        factory = factories[name]
    except KeyError:
        known = ", ".join(sorted(factories)) or "none"
        raise KeyError(f"unknown crypto transport {name!r} (installed: {known})") from None
    return factory.build(data_dir)
