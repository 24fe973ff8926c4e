"""
Hostile input over HTTP: hypothesis builds whole requests (method, path among
every endpoint and alias, query parameters valid-ish or not, headers, bodies
binary or near-valid) and sends them to the whole application in memory.

Whatever comes in, the server

* answers (no hang: the request finishes without the clock moving),
* never with a 5xx, never with a traceback, never logging an unexpected error,
* refuses with a status and a one-line ``text/plain`` reason,
* and still answers a normal poll with ``200 OK`` right after.

The server bugs these properties found are pinned by the tests at the end.
"""

from __future__ import annotations

import base64
import functools
import io
import string
import tarfile
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from twisted.logger import ILogObserver, globalLogPublisher
from zope.interface import implementer

from pushd.model import DeviceUpdate
from pushd.storage.memory import MemoryStore
from pushd.testing import TestServer
from tests.test_web_iclock import BASE, make_server, settle
from tests.vectors import all_vectors

# Under ``python -b -W error::BytesWarning`` (tox), hypothesis' own example cache compares
# int and bytes keys on a hash collision; only that warning, only from there, is ignored.
pytestmark = pytest.mark.filterwarnings("ignore::BytesWarning:hypothesis.internal.cache")

SENTINEL = "SENTINEL01"
#: Approved (open registration), plain transport.
PLAIN = "FUZZPLAIN1"
#: Approved, ZKX1 transport with an established session (see :func:`_fuzz_server`).
ZKX1 = "FUZZZKX1"

ENDPOINTS = ("cdata", "fdata", "getrequest", "devicecmd", "ping", "exchange", "file")
PREFIXES = ("/iclock/", "/iclock/iclock/")


@functools.cache
def endpoint_paths() -> Tuple[str, ...]:
    """Every child of ``/iclock/`` the application serves (aliases and plugins' included)."""
    with tempfile.TemporaryDirectory() as folder:
        iclock = make_server(folder).app.root.children[b"iclock"]  # type: ignore[attr-defined]
        names = sorted(name.decode() for name in iclock.children if name != b"iclock")
    return tuple(prefix + name for prefix in PREFIXES for name in names)


ALL_PATHS = st.deferred(lambda: st.sampled_from(endpoint_paths()))
ODD_PATHS = [
    "/",
    "/iclock",
    "/iclock/",
    "/iclock/iclock/iclock/cdata",
    "/iclock/nothing",
    "/iclock/CDATA",
    "/iclock/cdata/extra/segments",
    "/iclock/cdata.aspx.aspx",
    "/favicon.ico",
    "/api/devices",
    "/iclock/file/",
    "/iclock/file/firmware.bin",
    "/iclock/file/b64/firmware.bin",
    "/iclock/file/../secret.txt",
    "/iclock/file/%2e%2e/secret.txt",
    "/iclock/file/..%2fsecret.txt",
    "/iclock/file/.hidden",
    "/iclock/file/packs/",
    "/iclock/file//etc/passwd",
]
SECRET = b"this file is outside files/ and must never be served"
FIRMWARE = b"\x7fELF firmware image"

PARAM_NAMES = (
    "SN",
    "table",
    "options",
    "Stamp",
    "OpStamp",
    "PhotoStamp",
    "pushver",
    "language",
    "PushOptionsFlag",
    "DeviceType",
    "pushcommkey",
    "INFO",
    "type",
    "ContentType",
    "url",
    "cmdid",
    "PIN",
    "count",
    "packcnt",
    "packidx",
)
TABLES = (
    "ATTLOG",
    "attlog",
    "OPERLOG",
    "BIODATA",
    "ATTPHOTO",
    "options",
    "IDCARD",
    "ERRORLOG",
    "WORKCODE",
    "RTLOG",
    "rtstate",
    "tabledata",
    "RemoteAtt",
    "USERINFO",
    "",
    " ",
)
METHODS = ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE")
HEADER_NAMES = (
    b"Content-Type",
    b"User-Agent",
    b"Accept",
    b"Cookie",
    b"Authorization",
    b"X-Forwarded-For",
    b"Content-Encoding",
    b"Accept-Encoding",
    b"Expect",
    b"Range",
    b"If-Modified-Since",
    b"X-Custom",
)
CONTENT_TYPES = (
    b"text/plain",
    b"application/octet-stream",
    b"application/push;charset=UTF-8",
    b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=xyz",
    b"text/plain; charset=gb2312",
    b"",
)

VECTOR_BODIES = sorted({v.body for v in all_vectors("real") + all_vectors("spec") if v.body})


# -- strategies --------------------------------------------------------------

short_text = st.text(max_size=30)
header_value = st.text(
    alphabet=string.ascii_letters + string.digits + string.punctuation + " \t", max_size=60
).map(lambda s: s.strip().encode("ascii"))
serials = st.one_of(
    st.sampled_from([PLAIN, ZKX1, "CKJF201960996", "FUZZ2", "", " ", "a/b", "../x", "X" * 65]),
    st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z").filter(lambda s: s != SENTINEL),
    short_text.filter(lambda s: s != SENTINEL),
)


def _value_for(name: str) -> st.SearchStrategy[Any]:
    lowered = name.lower()
    known: Dict[str, st.SearchStrategy[Any]] = {
        "sn": serials,
        "table": st.sampled_from(TABLES),
        "options": st.sampled_from(["all", "", "ALL", "x"]),
        "language": st.sampled_from(["69", "83", "", "101", "\u00e9"]),
        "contenttype": st.sampled_from(["tgz", "TGZ", "", "gzip"]),
        "type": st.sampled_from(["publickey", "factors", "postverifydata", "", "PublicKey"]),
        "url": st.sampled_from(
            [
                "firmware.bin",
                "b64/firmware.bin",
                "/iclock/file/firmware.bin",
                "http://192.168.1.2/iclock/file/firmware.bin",
                "../secret.txt",
                "b64/../secret.txt",
                "/etc/passwd",
                "file/../../secret.txt",
                "packs/../../secret.txt",
                "%2e%2e/secret.txt",
                "",
            ]
        ),
        "stamp": st.one_of(st.integers(-(2**70), 2**70).map(str), short_text),
        "info": st.one_of(
            st.just("Ver 2.0.12-20150625,2,3,4,192.168.1.2,10,7,15,5,11110"),
            st.lists(short_text, max_size=15).map(",".join),
        ),
    }
    generic = st.one_of(short_text, st.binary(max_size=40))
    strategy = known.get(lowered)
    return generic if strategy is None else st.one_of(strategy, strategy, generic)


def _name_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, name.lower(), name.upper(), f" {name}"])


param = st.one_of(
    st.sampled_from(PARAM_NAMES).flatmap(lambda n: st.tuples(_name_variants(n), _value_for(n))),
    st.tuples(st.one_of(short_text, st.binary(max_size=12)), st.binary(max_size=20)),
)


def _enc(value: Any) -> str:
    data = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return quote_from_bytes(data, safe="")


queries = st.one_of(
    st.lists(param, max_size=8).map(
        lambda pairs: "&".join(f"{_enc(k)}={_enc(v)}" for k, v in pairs)
    ),
    st.sampled_from(["", "&", "=", "&&==&", "SN", "SN=", "%", "%zz=%", "SN=FUZZPLAIN1&SN=x"]),
)

paths = st.one_of(
    ALL_PATHS,
    ALL_PATHS,
    st.sampled_from(ODD_PATHS),
    st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=3).map(
        lambda parts: "/iclock/file/" + "/".join(quote_from_bytes(p, safe="") for p in parts)
    ),
    st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=3).map(
        lambda parts: "/iclock/" + "/".join(quote_from_bytes(p, safe="") for p in parts)
    ),
)


def _tgz(members: Sequence[Tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name or "x")
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def _splice(data: bytes, at: int, cut: int, insert: bytes) -> bytes:
    at = at % (len(data) + 1)
    return data[:at] + insert + data[at + cut :]


record_field = st.one_of(
    st.sampled_from(
        [
            "1",
            "2021-03-04 05:06:07",
            "2021-02-30 25:61:61",
            "0",
            "15",
            "",
            "36.5",
            "PIN=1",
            "Name=Ana",
            "Tmp=AAAA",
            "Size=99999999",
            "FID=10",
            "Type=9",
            "Content=!!!",
            "Valid=-1",
        ]
    ),
    short_text,
)
record_lines = st.lists(
    st.tuples(
        st.sampled_from(
            ["", "USER ", "FP ", "FACE ", "BIODATA ", "USERPIC ", "BIOPHOTO ", "OPLOG "]
        ),
        st.lists(record_field, max_size=11),
    ).map(lambda t: t[0] + "\t".join(t[1])),
    max_size=8,
).map(lambda lines: "\n".join(lines).encode("utf-8"))

bodies = st.one_of(
    st.just(b""),
    st.binary(max_size=1500),
    st.sampled_from(VECTOR_BODIES),
    st.tuples(
        st.sampled_from(VECTOR_BODIES),
        st.integers(0, 10**6),
        st.integers(0, 64),
        st.binary(max_size=16),
    ).map(lambda t: _splice(*t)),
    record_lines,
    st.lists(st.tuples(short_text, st.one_of(record_lines, st.binary(max_size=200))), max_size=3)
    .map(_tgz)
    .flatmap(
        lambda pack: st.one_of(
            st.just(pack),
            st.tuples(st.integers(0, 10**6), st.integers(0, 32), st.binary(max_size=8)).map(
                lambda t: _splice(pack, *t)
            ),
        )
    ),
    st.tuples(
        st.lists(st.tuples(short_text, short_text), max_size=4),
        st.binary(max_size=300),
        st.booleans(),
    ).map(
        lambda t: "\n".join(f"{k}={v}" for k, v in t[0]).encode() + (b"\0" if t[2] else b"") + t[1]
    ),
    st.one_of(st.binary(max_size=300), st.text(max_size=100).map(str.encode)).map(
        lambda b: b"PublicKey=" + (base64.b64encode(b) if len(b) % 2 else b)
    ),
    st.binary(max_size=300).map(base64.b64encode),
)

headers = st.dictionaries(
    st.sampled_from(HEADER_NAMES),
    st.one_of(header_value, st.sampled_from(CONTENT_TYPES)).map(lambda v: [v]),
    max_size=4,
)


class Request:
    """One generated request."""

    def __init__(
        self, method: str, path: str, query: str, headers: Dict[bytes, List[bytes]], body: bytes
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")

    def __repr__(self) -> str:
        return (
            f"Request({self.method!r}, {self.target!r}, headers={self.headers!r}, "
            f"body={self.body[:200]!r}{'...' if len(self.body) > 200 else ''})"
        )


requests = st.builds(
    Request,
    st.one_of(
        st.sampled_from(("GET", "POST")),
        st.sampled_from(("GET", "POST")),
        st.sampled_from(METHODS),
        st.from_regex(r"\A[A-Z]{1,10}\Z"),
    ),
    paths,
    queries,
    headers,
    bodies,
)
uploads = st.builds(
    Request,
    st.just("POST"),
    st.sampled_from(
        [p + e + s for p in PREFIXES for e in ("cdata", "fdata") for s in ("", ".aspx")]
    ),
    st.tuples(
        st.sampled_from([PLAIN, ZKX1]),
        st.sampled_from(TABLES),
        st.sampled_from(["", "&ContentType=tgz", "&Stamp=9999", "&cmdid=12&Stamp=1"]),
    ).map(lambda t: f"SN={t[0]}&table={t[1]}{t[2]}"),
    st.just({}),
    bodies,
)


VECTORS = all_vectors("real") + all_vectors("spec")


def _mutated(
    vector: Any, drop: int, extra: List[Tuple[Any, Any]], body: Optional[bytes]
) -> Request:
    path, _, query = vector.target.decode("utf-8", "replace").partition("?")
    pairs = [p for p in query.split("&") if p]
    if pairs and drop >= 0:
        del pairs[drop % len(pairs)]
    pairs += [f"{_enc(k)}={_enc(v)}" for k, v in extra]
    return Request(
        vector.method.decode(),
        path,
        "&".join(pairs),
        {},
        vector.body if body is None else body,
    )


#: The captured requests of real terminals and of the spec, each changed a little:
#: a parameter dropped or added, the body spliced or replaced.
near_vectors = st.builds(
    _mutated,
    st.sampled_from(VECTORS),
    st.integers(-3, 20),
    st.lists(param, max_size=2),
    st.one_of(
        st.none(),
        st.none(),
        bodies,
        st.tuples(
            st.sampled_from(VECTOR_BODIES),
            st.integers(0, 10**6),
            st.integers(0, 64),
            st.binary(max_size=16),
        ).map(lambda t: _splice(*t)),
    ),
)


# -- the server and the checks ----------------------------------------------


class Reply:
    def __init__(self, status: int, headers: Dict[bytes, List[bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


@implementer(ILogObserver)
class Failures:
    """Collects the log events that carry a failure (an unexpected exception)."""

    def __init__(self) -> None:
        self.events: List[Dict[str, Any]] = []

    def __call__(self, event: Dict[str, Any]) -> None:
        if event.get("log_failure") is not None:
            self.events.append(event)

    def take(self) -> List[str]:
        found = [
            f"{e.get('log_format')!r}: {e['log_failure'].getErrorMessage()}" for e in self.events
        ]
        self.events.clear()
        return found


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: Any) -> Iterator[TestServer]:
    """
    One server for all examples (state accumulates, as in real life): open
    registration, memory store, a firmware file, a secret outside ``files/``,
    a plain device and a ZKX1 device with an established session.
    """
    from pushd.sim_zkx1 import ZKX1Client, generate_device_key

    data = tmp_path_factory.mktemp("fuzz")
    (data / "files").mkdir()
    (data / "files" / "firmware.bin").write_bytes(FIRMWARE)
    (data / "secret.txt").write_bytes(SECRET)
    server = make_server(data, store=MemoryStore())
    for sn in (SENTINEL, PLAIN, ZKX1):
        assert (
            send(server, Request("GET", "/iclock/cdata", f"SN={sn}&options=all", {}, b"")).status
            == 200
        )
    settle(server, server.app.registry.update(ZKX1, DeviceUpdate(crypto="zkx1")))
    client = ZKX1Client(ZKX1, generate_device_key(2048))
    for kind, body in (("publickey", client.publickey_request), ("factors", None)):
        payload = body() if body is not None else client.factors_request()
        reply = send(
            server, Request("POST", "/iclock/exchange", f"SN={ZKX1}&type={kind}", {}, payload)
        )
        assert reply.status == 200, reply
        if kind == "publickey":
            client.publickey_reply(reply.body)
        else:
            client.factors_reply(reply.body)
    sealed = client.seal(b"1\t2021-01-01 00:00:00\t0\t1\n")
    upload = Request("POST", "/iclock/cdata", f"SN={ZKX1}&table=ATTLOG&Stamp=1", {}, sealed)
    assert send(server, upload).status == 200
    failures = Failures()
    globalLogPublisher.addObserver(failures)
    server.failures = failures  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        globalLogPublisher.removeObserver(failures)


def send(server: TestServer, request: Request) -> Reply:
    kwargs: Dict[str, Any] = {"headers": request.headers}
    if request.body or request.method not in ("GET", "HEAD"):
        kwargs["data"] = request.body
    response = settle(server, server.treq.request(request.method, BASE + request.target, **kwargs))
    body = settle(server, server.treq.content(response))
    raw = {k.lower(): v for k, v in response.headers.getAllRawHeaders()}
    return Reply(response.code, raw, body)


def _form_decoded_by_the_test_client(request: Request, reply: Reply) -> bool:
    """
    The in-memory client serves requests with Twisted's own ``Request``, which
    decodes multipart bodies (a malformed one is a bare 400); the server's
    ``LimitedRequest`` never does (``test_loopback`` proves it).
    """
    if reply.status != 400 or reply.body or request.method != "POST":
        return False
    return any(
        value.lower().startswith(b"multipart/form-data")
        for value in request.headers.get(b"Content-Type", [])
    )


def check(server: TestServer, request: Request) -> Reply:
    reply = send(server, request)
    event(f"status {reply.status}")
    failures = server.failures.take()  # type: ignore[attr-defined]
    where = f"{request!r} -> {reply!r}"
    assert b"Traceback" not in reply.body and b'File "' not in reply.body, where
    if _form_decoded_by_the_test_client(request, reply):
        return reply
    assert reply.status < 500, where
    assert not failures, f"{where}\nlogged: {failures}"
    if reply.status >= 400 and request.method != "HEAD":
        assert reply.body and b"\n" not in reply.body and b"\r" not in reply.body, where
        assert len(reply.body) <= 200, where
        # text/plain, or the endpoint's own type (exchange: application/push; file:
        # application/octet-stream, even for its one-line refusals)
        content_type = reply.headers.get(b"content-type", [b""])[0]
        assert content_type.startswith(
            (b"text/plain", b"application/push", b"application/octet-stream")
        ), where
    assert SECRET not in reply.body, where
    if reply.status == 200 and request.method in ("POST",) and "cdata" in request.path:
        assert reply.body.startswith(b"OK") or b"=" in reply.body, where
    poll = send(server, Request("GET", "/iclock/getrequest", f"SN={SENTINEL}", {}, b""))
    assert (poll.status, poll.body) == (200, b"OK"), f"after {where}: {poll!r}"
    return reply


# -- the properties ----------------------------------------------------------

_settings = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_settings
@given(request=requests)
def test_any_request_gets_a_short_answer_and_the_server_keeps_serving(
    fuzz_server: TestServer, request: Request
) -> None:
    check(fuzz_server, request)


@_settings
@given(request=uploads)
def test_uploads_of_any_body_are_stored_or_refused_in_one_line(
    fuzz_server: TestServer, request: Request
) -> None:
    reply = check(fuzz_server, request)
    assert reply.status in (200, 400, 401, 403, 404, 409, 413), reply


def test_every_endpoint_and_alias_is_fuzzed() -> None:
    paths = endpoint_paths()
    for prefix in PREFIXES:
        for endpoint in ENDPOINTS:
            assert prefix + endpoint in paths and prefix + endpoint + ".aspx" in paths


@_settings
@given(request=near_vectors)
def test_real_requests_changed_a_little_are_served_or_refused_in_one_line(
    fuzz_server: TestServer, request: Request
) -> None:
    check(fuzz_server, request)


@_settings
@given(
    url=st.one_of(
        st.sampled_from(["firmware.bin", "b64/firmware.bin"]),
        st.lists(
            st.sampled_from(
                ["..", ".", "", "files", "secret.txt", "firmware.bin", "%2e%2e", "b64"]
            ),
            min_size=1,
            max_size=5,
        ).map("/".join),
    ),
    as_param=st.booleans(),
)
def test_file_downloads_serve_files_of_the_area_only(
    fuzz_server: TestServer, url: str, as_param: bool
) -> None:
    if as_param:
        request = Request("GET", "/iclock/file", f"SN={PLAIN}&url={_enc(url)}", {}, b"")
    else:
        request = Request("GET", "/iclock/file/" + url, "", {}, b"")
    reply = check(fuzz_server, request)
    if reply.status == 200:
        assert reply.body in (FIRMWARE, base64.b64encode(FIRMWARE)), request


# -- server bugs the fuzzing found, fixed ------------------------------------


@pytest.mark.parametrize("target", ["/iclock/file/a%00b", "/iclock/file?url=a%00b"])
def test_nul_in_a_file_path_is_a_404(fuzz_server: TestServer, target: str) -> None:
    path, _, query = target.partition("?")
    reply = send(fuzz_server, Request("GET", path, query, {}, b""))
    fuzz_server.failures.take()  # type: ignore[attr-defined]
    assert reply.status == 404, reply


def test_file_endpoint_refuses_other_methods_in_one_line(fuzz_server: TestServer) -> None:
    reply = send(fuzz_server, Request("PUT", "/iclock/file/firmware.bin", "", {}, b"x"))
    assert reply.status == 405 and b"\n" not in reply.body, reply


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
@pytest.mark.parametrize("path", ["/iclock", "/iclock/iclock"])
def test_the_iclock_folder_itself_is_a_plain_404(
    fuzz_server: TestServer, method: str, path: str
) -> None:
    reply = send(fuzz_server, Request(method, path, "", {}, b""))
    failures = fuzz_server.failures.take()  # type: ignore[attr-defined]
    assert reply.status == 404 and not failures, (reply, failures)
    assert reply.body == (b"" if method == "HEAD" else b"Not found"), reply
