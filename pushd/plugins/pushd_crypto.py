"""
The built-in crypto transports, as plugins of the ``pushd.plugins`` namespace
package (:mod:`pushd.crypto.registry` finds them).  Only factories live here.
"""

from pushd.crypto.transports import PlainTransportFactory, ZKX1TransportFactory

plain = PlainTransportFactory()
zkx1 = ZKX1TransportFactory()
