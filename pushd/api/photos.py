# -*- test-case-name: tests.test_api -*-
"""
``/api/photos``: attendance photos (``ATTPHOTO``, files under the data
directory) and comparison photos (``BIOPHOTO``, stored as base64), listed
together; ``att-<n>`` and ``bio-<n>`` identify them.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Dict, List, Optional, Tuple, cast

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.web.resource import Resource
from twisted.web.server import Request

from pushd.api._context import Context
from pushd.api._errors import BadRequest, NotFound
from pushd.api._params import Args, record_query, to_utc
from pushd.api._resource import ApiResource, Reply, api_handler
from pushd.errors import PushdError
from pushd.model import RecordQuery

__all__ = ["Photo", "Photos", "image_type"]

#: Photo id prefix -> (record kind, ``type`` shown).
_KINDS = {"att": ("attphotos", "attendance"), "bio": ("biophotos", "comparison")}
_TYPES = {shown: prefix for prefix, (_, shown) in _KINDS.items()}


def image_type(data: bytes) -> bytes:
    """The content type of an image by its signature; devices send JPEG."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return b"image/png"
    if data.startswith(b"GIF8"):
        return b"image/gif"
    if data.startswith(b"BM"):
        return b"image/bmp"
    return b"image/jpeg"


def _att_json(item: Dict[str, Any], offset: Optional[int]) -> Dict[str, Any]:
    photo_id = f"att-{item['id']}"
    return {
        "id": photo_id,
        "type": "attendance",
        "sn": item["sn"],
        "pin": item["pin"],
        "time": item["time"],
        "utc": to_utc(item["time"], offset),
        "name": item["name"],
        "photo_type": item["photo_type"],
        "size": item["stored_size"],
        "sha256": item["sha256"],
        "received": item["received"],
        "url": f"/api/photos/{photo_id}",
    }


def _bio_json(item: Dict[str, Any]) -> Dict[str, Any]:
    photo_id = f"bio-{item['id']}"
    return {
        "id": photo_id,
        "type": "comparison",
        "sn": item["sn"],
        "pin": item["pin"],
        "file_name": item["file_name"],
        "bio_type": item["type"],
        "no": item["no"],
        "index": item["index"],
        "size": item["size"],
        "updated": item["updated"],
        "url": f"/api/photos/{photo_id}",
    }


def _split_cursor(cursor: Optional[str]) -> Tuple[str, Optional[str]]:
    """``att:<cursor>`` / ``bio:<cursor>`` -> the prefix to list from, and the store's cursor."""
    if cursor is None:
        return "att", None
    prefix, colon, rest = cursor.partition(":")
    if prefix not in _KINDS or not colon:
        raise BadRequest(f"invalid cursor: {cursor!r}")
    return prefix, rest or None


def _split_id(photo_id: str) -> Tuple[str, int]:
    prefix, _, number = photo_id.partition("-")
    if prefix not in _KINDS or not number.isdigit():
        raise NotFound(f"unknown photo {photo_id}")
    return prefix, int(number)


class Photos(ApiResource):
    """
    ``GET /api/photos?sn=&pin=&type=``: attendance photos first, then
    comparison photos; ``type`` (``attendance`` or ``comparison``) keeps one kind.
    """

    isLeaf = False

    def __init__(self, context: Context) -> None:
        super().__init__()
        self._context = context

    def child(self, name: str) -> Optional[Resource]:
        return Photo(self._context, name)

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        args = Args(request.args)
        query = record_query(args, ("sn", "pin"))
        only = args.get("type")
        if only is not None and only not in _TYPES:
            raise BadRequest("type must be attendance or comparison")
        start, cursor = _split_cursor(query.cursor)
        order = list(_KINDS)
        prefixes = [p for p in order[order.index(start) :] if only is None or _TYPES[only] == p]
        items: List[Dict[str, Any]] = []
        zones = self._context.zones()
        for prefix in prefixes:
            wanted = query.limit - len(items)
            if wanted == 0:
                return {"items": items, "next": f"{prefix}:"}
            kind, _ = _KINDS[prefix]
            after = cursor if prefix == start else None
            search = RecordQuery(sn=query.sn, pin=query.pin, cursor=after, limit=wanted)
            page = await self._context.query(kind, search)
            for item in page.items:
                if prefix == "att":
                    items.append(_att_json(item, await zones.offset(item["sn"])))
                else:
                    items.append(_bio_json(item))
            if page.next is not None:
                return {"items": items, "next": f"{prefix}:{page.next}"}
        return {"items": items, "next": None}


class Photo(ApiResource):
    """``GET /api/photos/{id}``: the image itself."""

    def __init__(self, context: Context, photo_id: str) -> None:
        super().__init__()
        self._context = context
        self._id = photo_id

    async def _item(self) -> Tuple[str, Dict[str, Any]]:
        prefix, number = _split_id(self._id)
        kind, _ = _KINDS[prefix]
        # cursors are "after this id" in every store: the one record with ``number``
        query = RecordQuery(cursor=str(number - 1), limit=1)
        page = await self._context.query(kind, query)
        if not page.items or page.items[0]["id"] != number:
            raise NotFound(f"unknown photo {self._id}")
        return prefix, page.items[0]

    @api_handler
    async def render_GET(self, request: Request) -> Any:
        prefix, item = await self._item()
        if prefix == "bio":
            try:
                data = base64.b64decode(item.get("content") or "", validate=False)
            except (binascii.Error, ValueError):
                raise PushdError(f"photo {self._id} is stored damaged") from None
        else:
            data = await self._read(item.get("path") or "")
        if not data:
            raise NotFound(f"photo {self._id} has no image")
        return Reply(data, content_type=image_type(data))

    async def _read(self, relative: str) -> bytes:
        root = os.path.realpath(self._context.app.config.data_dir)
        path = os.path.realpath(os.path.join(root, relative))
        if not relative or not path.startswith(root + os.sep):
            raise NotFound(f"photo {self._id} has no image file")
        reactor = cast(IReactorThreads, self._context.clock)
        data: Optional[bytes] = await deferToThreadPool(
            reactor, reactor.getThreadPool(), _read_file, path
        )
        if data is None:
            raise NotFound(f"the image file of photo {self._id} is missing")
        return data


def _read_file(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None
