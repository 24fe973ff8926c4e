# -*- test-case-name: tests.test_storage_contract -*-
"""
Stores: where devices and everything they upload are kept.

Each backend implements :class:`pushd.interfaces.IStore` and is chosen by a
URL (the ``--store`` option):

``sqlite:PATH``
    :class:`pushd.storage.sqlite.SQLiteStore`, one SQLite file.  ``PATH`` is
    relative to the working directory unless absolute; ``sqlite:///var/x.db``
    (the URL form) means ``/var/x.db``.  A missing parent directory is created.
``postgresql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?PARAM=VALUE...]``
    :class:`pushd.storage.postgres.PostgresStore`, a PostgreSQL database that
    several pushd nodes may share (``postgres://`` too).  The URL is libpq's:
    ``sslmode``, ``connect_timeout``, ``options=-csearch_path%3Dpushd`` and the
    other libpq parameters apply.  Needs psycopg 3 and psycopg-pool.
``memory:``
    :class:`pushd.storage.memory.MemoryStore`: nothing survives a restart.

This module imports the backends only when asked for one.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pushd.interfaces import IStore

__all__ = ["store_from_url"]


def store_from_url(url: str, reactor: Any = None) -> IStore:
    """
    Build (but do not open) the store a URL names.

    :param url: ``sqlite:PATH``, ``postgresql://...``, ``memory:``; see the module
        documentation.
    :param reactor: the reactor for stores that run threads; the global one by default.
    :raises ValueError: for an unknown scheme, a missing path, a directory that
        cannot be created, or a backend that is not available.
    """
    scheme, colon, rest = url.partition(":")
    scheme = scheme.lower()
    if not colon:
        raise ValueError(f"Not a store URL: {url!r}: use sqlite:PATH, postgresql://... or memory:")
    if scheme == "sqlite":
        return _sqlite_store(url, rest, reactor)
    if scheme == "memory" and rest in ("", "//"):
        from pushd.storage.memory import MemoryStore

        return MemoryStore()
    if scheme in ("postgresql", "postgres"):
        return _postgres_store(url, rest, reactor)
    raise ValueError(
        f"Unknown store URL scheme {scheme!r}: use sqlite:PATH, postgresql://... or memory:"
    )


def _postgres_store(url: str, rest: str, reactor: Any) -> IStore:
    # The URL is never repeated in an error: it may hold a password.
    if not rest.startswith("//"):
        raise ValueError("A PostgreSQL store URL starts with postgresql://")
    try:
        from pushd.storage.postgres import PostgresStore
    except ImportError as e:
        raise ValueError(
            f"The PostgreSQL store needs psycopg 3 and psycopg-pool ({e}):"
            " pip install 'psycopg[binary]' psycopg-pool"
        ) from e
    return PostgresStore("postgresql:" + rest, reactor=reactor)


def _sqlite_store(url: str, rest: str, reactor: Any) -> IStore:
    path = rest.removeprefix("//")  # sqlite:///abs/path -> /abs/path
    if not path:
        raise ValueError(f"No database path in {url!r} (expected sqlite:PATH)")
    path = os.path.expanduser(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as e:
        raise ValueError(f"Cannot create the directory of {url!r}: {e.strerror}") from e

    from pushd.storage.sqlite import SQLiteStore

    return SQLiteStore(path, reactor=reactor)
