"""
The PUSH protocol, pure: bytes in, values out, values in, bytes out.

Nothing in this package imports Twisted or touches a request, a reactor or a
file; every parser raises only :class:`pushd.errors.ProtocolError`.
"""

from typing import List

__all__: List[str] = []
