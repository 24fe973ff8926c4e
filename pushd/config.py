# -*- test-case-name: tests.test_tap -*-
"""
Configuration: what ``twistd pushd`` was told, validated, with defaults.

:class:`Config` is built by :mod:`pushd.tap` from the command line and the
``--config`` INI file and handed, already valid, to
:func:`pushd.service.build_service`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import List, Mapping, Sequence, Tuple

from pushd.commands import CommandSettings
from pushd.model import STAMP_TABLES
from pushd.protocol.replies import (
    SERVER_VERSION,
    format_timezone,
    merge_options,
    negotiate_version,
)

__all__ = [
    "Config",
    "Limits",
    "default_options",
    "handshake_options",
    "local_utc_offset_minutes",
]

#: TransFlag format II (spec 5): every kind of data, uploaded automatically.
_TRANS_DATA = "AttLog OpLog AttPhoto EnrollUser ChgUser EnrollFP ChgFP FPImag FACE UserPic WORKCODE"
TRANS_FLAG = "TransData " + "\t".join([*_TRANS_DATA.split(), "BioPhoto"])

#: What the server asks devices to push back (spec 5 PushOptions, spec 8).
PUSH_OPTIONS = (
    "FingerFunOn,FaceFunOn,FPVersion,FaceVersion,FvFunOn,PvFunOn,PhotoFunOn,BioPhotoFun,"
    "BioDataFun,VisilightFun,MultiBioDataSupport,MultiBioPhotoSupport,MultiBioVersion,"
    "MaxMultiBioDataCount,MaxMultiBioPhotoCount,MultiBioDataCount,MultiBioPhotoCount"
)

#: Appendix 10: pushd stores every biometric type but "common" (0).
MULTI_BIO_SUPPORT = "0:1:1:1:1:1:1:1:1:1"


def local_utc_offset_minutes() -> int:
    """The server's current UTC offset in minutes (the default ``TimeZone``)."""
    return int(time.localtime().tm_gmtoff // 60)


def default_options(timezone_minutes: int) -> Tuple[Tuple[str, str], ...]:
    """
    The server-wide values of the options block (spec 5), in reply order.
    ``[options]`` in the config file and per-device settings override them by name.
    """
    return (
        ("ErrorDelay", "30"),
        ("Delay", "10"),
        ("TransTimes", "00:00;14:05"),
        ("TransInterval", "1"),
        ("TransFlag", TRANS_FLAG),
        ("TimeZone", format_timezone(timezone_minutes)),
        ("Realtime", "1"),
        ("PushOptionsFlag", "1"),
        ("PushOptions", PUSH_OPTIONS),
        ("ATTPHOTOBase64", "0"),
        ("MultiBioDataSupport", MULTI_BIO_SUPPORT),
        ("MultiBioPhotoSupport", MULTI_BIO_SUPPORT),
    )


def handshake_options(
    defaults: Sequence[Tuple[str, str]],
    stamps: Mapping[str, str],
    settings: Mapping[str, str],
    push_version: str,
    crypto: Sequence[Tuple[str, str]] = (("Encrypt", "0"),),
) -> List[Tuple[str, str]]:
    """
    The options block for one device: its upload stamps (``None`` where never
    set), the server values with the device's own settings applied, then what
    the server decides itself: the keys of the device's crypto transport
    (``Encrypt``...), ``ServerVer``, the negotiated ``PushProtVer``.
    """
    pairs = [(f"{table}Stamp", stamps.get(table) or "None") for table in STAMP_TABLES]
    pairs += merge_options(defaults, settings)
    pairs += crypto
    pairs += [
        ("ServerVer", SERVER_VERSION),
        ("PushProtVer", negotiate_version(push_version)),
    ]
    return pairs


@dataclass(frozen=True)
class Limits:
    """
    The limits of the device listener.

    ``max_body``: bytes of a request body; ``max_records``: lines of one
    upload; ``max_photo``: bytes of one photo; ``idle_timeout``: seconds a
    connection may stay silent; ``connections_per_peer``: open connections
    one address may hold at once.
    """

    max_body: int = 64 * 1024 * 1024
    max_records: int = 100_000
    max_photo: int = 8 * 1024 * 1024
    idle_timeout: float = 120.0  # 3.x terminals keep connections open between requests
    connections_per_peer: int = 64


@dataclass(frozen=True)
class Config:
    """Everything :func:`pushd.service.build_service` needs, validated."""

    listen: Tuple[str, ...] = ("tcp:8080",)
    store: str = ""
    data_dir: str = "./pushd-data"
    registration: str = "approve"
    allow: Tuple[str, ...] = ()
    options: Tuple[Tuple[str, str], ...] = field(default_factory=lambda: default_options(0))
    seen_flush_seconds: float = 5.0
    commands: CommandSettings = field(default_factory=CommandSettings)
    sync_groups: Tuple[str, ...] = ()
    api: str = "tcp:8081:interface=127.0.0.1"
    api_token: str = ""
    limits: Limits = field(default_factory=Limits)
    sinks: Tuple[str, ...] = ()
    sink_secret: str = ""
    plugins: Tuple[str, ...] = ()
    plugin_config: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def store_url(self) -> str:
        """``--store``, defaulting to ``sqlite:<data-dir>/pushd.sqlite3``."""
        return self.store or "sqlite:" + os.path.join(self.data_dir, "pushd.sqlite3")

    def option(self, name: str, default: str = "") -> str:
        """The server-wide value of option ``name``."""
        return dict(self.options).get(name, default)
