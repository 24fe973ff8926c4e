"""
Coverage-guided fuzzing of pushd's parsers of device input with atheris.

Every input goes through every parser: the upload tables in UTF-8 and
GB18030, options, command replies (then their interpretation), attendance
photos, tgz data packs, query strings (parameters, handshake, INFO), raw
commands, times, photo names, the ZKX1 envelope and exchange bodies, and any
``parse_*(data: bytes)`` function a new ``pushd.protocol`` module adds.  A
parser may refuse with :class:`pushd.errors.ProtocolError` (the crypto ones
with :class:`pushd.crypto.CryptoError`, :func:`parse_time` with
``ValueError``, as documented); any other exception is a crash, which
libFuzzer reports and saves.

Usage (see fuzz/README.md)::

    python fuzz/fuzz_parsers.py WORK_CORPUS fuzz/corpus -max_total_time=60
    python fuzz/fuzz_parsers.py --run FILE...     # replay inputs without atheris

Without atheris the script says so and exits 0.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import os
import pkgutil
import sys
from functools import partial
from typing import Any, Callable, List, Optional, Tuple, Type

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

#: ``pushd.protocol`` modules whose parsers :func:`run_one` calls by name.
KNOWN_MODULES = {
    "cdata",
    "push3",
    "commands",
    "devicecmd",
    "packs",
    "photo",
    "query",
    "records",
    "replies",
    "text",
}
TABLES = ("ATTLOG", "OPERLOG", "BIODATA", "IDCARD", "ERRORLOG", "WORKCODE", "UNKNOWN")
COMMANDS = ("", "INFO", "SHELL ls", "GetFile a", "PutFile a b ACTION=SYNCDATA", "VERIFY SUM ATTLOG")

Probe = Callable[[bytes], Any]

_probes: Optional[List[Tuple[str, Probe]]] = None
_refusals: Tuple[Type[BaseException], ...] = ()


def load() -> List[Tuple[str, Probe]]:
    """
    Import the parsers (inside ``atheris.instrument_imports`` when fuzzing).

    :returns: ``(name, probe)`` pairs: each probe feeds the bytes to one
        parser, letting only the documented refusals through.
    """
    global _probes, _refusals
    if _probes is not None:
        return _probes
    from twisted.web.http import parse_qs  # what twisted.web does to a query string

    import pushd.protocol
    from pushd.crypto import CryptoError
    from pushd.crypto.vendor import describe_exchange, recognise_publickey
    from pushd.crypto.zkx1 import parse_envelope, parse_exchange_body
    from pushd.errors import ProtocolError
    from pushd.protocol.cdata import parse_options, parse_table, parse_time
    from pushd.protocol.commands import interpret, validate_raw
    from pushd.protocol.devicecmd import parse_devicecmd
    from pushd.protocol.packs import PackLimits, read_pack
    from pushd.protocol.photo import parse_attphoto, parse_photo_name
    from pushd.protocol.query import parse_handshake, parse_info, parse_params

    _refusals = (ProtocolError, CryptoError)
    limits = PackLimits(max_members=50, max_total=1 << 20, max_ratio=200)
    probes: List[Tuple[str, Probe]] = []

    def add(name: str, probe: Probe) -> None:
        probes.append((name, probe))

    for codec in ("utf-8", "gb18030"):
        for table in TABLES:
            add(f"parse_table {table} {codec}", partial(_refused, parse_table, table, codec=codec))
        add(f"parse_options {codec}", partial(_refused, parse_options, codec=codec))

    def devicecmd(data: bytes) -> None:
        for reply in _refused(parse_devicecmd, data) or []:
            for command in COMMANDS:
                interpret(command, reply)

    def query(data: bytes) -> None:
        params = parse_params(parse_qs(data, 1))
        _refused(parse_handshake, params)
        parse_info(params.get("info"))

    def text(data: bytes) -> None:
        decoded = data.decode("utf-8", "surrogateescape")
        parse_info(decoded)
        _refused(validate_raw, decoded)
        parse_photo_name(decoded)
        describe_exchange(decoded[:20], data)

    def time(data: bytes) -> None:
        try:
            parse_time(data)
        except ValueError:  # documented: callers turn it into a refusal
            pass

    add("parse_devicecmd + interpret", devicecmd)
    add("parse_attphoto", partial(_refused, parse_attphoto))
    add("parse_attphoto base64", lambda data: _refused(parse_attphoto, data, True))
    add("read_pack", lambda data: _refused(read_pack, data, limits))
    add("read_pack gzip", lambda data: _refused(read_pack, gzip.compress(data, 1), limits))
    add("parse_params/handshake/info", query)
    add("info/raw command/photo name/exchange text", text)
    add("parse_time", time)
    add("parse_envelope", partial(_refused, parse_envelope))
    add(
        "parse_exchange_body PublicKey",
        lambda data: _refused(parse_exchange_body, data, "PublicKey"),
    )
    add("parse_exchange_body Factors", lambda data: _refused(parse_exchange_body, data, "Factors"))
    add("recognise_publickey", recognise_publickey)
    probes.extend(_push3())
    for info in pkgutil.iter_modules(pushd.protocol.__path__):
        if info.name in KNOWN_MODULES or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"pushd.protocol.{info.name}")
        for function in _bytes_parsers(module):
            add(f"{info.name}.{function.__name__}", partial(_refused, function))
    _probes = probes
    return probes


def _push3() -> List[Tuple[str, Probe]]:
    """The push3 parsers that take more than bytes (when the module is there)."""
    try:
        from pushd.protocol import push3
    except ImportError:
        return []
    from pushd.protocol.devicecmd import parse_devicecmd

    def tabledata(data: bytes) -> None:
        for table in ("user", "biodata", "ATTPHOTO", "transaction", "userpic", "X"):
            _refused(push3.parse_tabledata, table, data)

    def querydata(data: bytes) -> None:
        for kind in ("count", "options", "tabledata", "vmtable", "other"):
            params = {"type": kind, "cmdid": "1", "tablename": "user", "count": "x"}
            _refused(push3.parse_querydata, params, data)

    def replies(data: bytes) -> None:
        for reply in _refused(parse_devicecmd, data) or []:
            for command in (*COMMANDS, "DATA COUNT user", "ACCOUNT"):
                push3.interpret3(command, reply)

    simple = [(f"push3.{f.__name__}", partial(_refused, f)) for f in _bytes_parsers(push3)]
    return [
        *simple,
        ("push3.parse_tabledata", tabledata),
        ("push3.parse_querydata", querydata),
        ("push3.interpret3", replies),
    ]


def _exchange_body(parse: Callable[[bytes, str], bytes], name: str, data: bytes) -> None:
    _refused(parse, data, name)


def _refused(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args)``; ``None`` when it refuses the input the documented way."""
    try:
        return call(*args, **kwargs)
    except _refusals:
        return None


def _bytes_parsers(module: Any) -> List[Callable[[bytes], Any]]:
    """The ``parse_*`` functions of ``module`` taking ``bytes`` first, the rest defaulted."""
    found: List[Callable[[bytes], Any]] = []
    for name in getattr(module, "__all__", dir(module)):
        function = getattr(module, name, None)
        if not (name.startswith("parse_") and inspect.isfunction(function)):
            continue
        parameters = list(inspect.signature(function).parameters.values())
        if not parameters or parameters[0].annotation not in (bytes, "bytes"):
            continue
        if all(p.default is not p.empty for p in parameters[1:]):
            found.append(function)
    return found


def run_one(data: bytes) -> None:
    """
    Feed ``data`` to every parser.

    :raises Exception: anything but the documented refusals: a bug.
    """
    for _, probe in load():
        probe(data)


def _test_one_input(data: bytes) -> None:
    run_one(data)


def _replay(paths: List[str]) -> int:
    failures = 0
    for path in paths:
        files = (
            [os.path.join(d, n) for d, _, names in os.walk(path) for n in sorted(names)]
            if os.path.isdir(path)
            else [path]
        )
        for name in files:
            with open(name, "rb") as handle:
                data = handle.read()
            for probe_name, probe in load():
                try:
                    probe(data)
                except Exception as error:  # report every failing input, then fail
                    failures += 1
                    print(f"FAIL {name} ({probe_name}): {type(error).__name__}: {error}")
    print(f"fuzz_parsers: replayed inputs, {failures} failure(s)")
    return 1 if failures else 0


def main(argv: List[str]) -> int:
    if len(argv) > 1 and argv[1] == "--run":
        return _replay(argv[2:])
    try:
        import atheris
    except ImportError:
        print(
            "fuzz_parsers: SKIPPED: atheris is not installed for "
            f"{sys.implementation.name} {sys.version.split()[0]} "
            "(pip install atheris: wheels for CPython on Linux x86_64, else it needs clang).",
        )
        return 0
    for arg in argv[1:]:
        if not arg.startswith("-") and not os.path.exists(arg):
            os.makedirs(arg)  # libFuzzer wants its corpus directories to exist
    with atheris.instrument_imports(include=["pushd"]):
        load()
    atheris.Setup(argv, _test_one_input)
    atheris.Fuzz()
    return 0  # pragma: no cover - atheris.Fuzz exits the process


if __name__ == "__main__":
    sys.exit(main(sys.argv))
