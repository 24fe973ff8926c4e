"""
The management REST API (CONTRACT section 3) as ``twisted.web`` resources.

:func:`build_api` returns the tree to serve at the root of the ``--api``
listener; ``docs/api.md`` describes every endpoint.
"""

from pushd.api.root import build_api

__all__ = ["build_api"]
