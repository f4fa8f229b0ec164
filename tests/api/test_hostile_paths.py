"""Hostile addresses, PSF names, keys and URL paths over HTTP, shoal.Client
and the CLI: each gets a clean answer (the record, or 404 / 422 / 400 with
the error body), and none reaches a file outside the data directory.

No route takes a filesystem path: the data directory is the server's
(`shoal serve --data`), checkpoints are numbered, not named, and a PSF name
or a key is never part of a file name (the registry is one JSON file). The
one route that serves files is /docs/assets/ (Swagger UI's, from its
package), which refuses to leave its directory. The tests prove it from
outside: the data directory sits three levels below the test's tmp dir,
with a sentinel file at each level above it, and every hostile request
must leave the whole tree as it was (paths, sizes, modification times),
never answer with a sentinel's bytes, and never create a path named after
what the request carried (every hostile name and key holds "pwn").

The oracle is what the requests themselves stored: the address POST
/records answered for each one-record body.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import urllib.parse
from pathlib import Path

import httpx
import pytest

import shoal
from shoal.api import create_app
from shoal.cli import main as cli_main

from .conftest import assert_error, lines

SENTINEL = b"SENTINEL-not-for-clients"
PAGE = 16 * 1024  # tests/conftest.py TINY


@pytest.fixture
def store_path(tmp_path) -> Path:
    """Deep enough that ../, ../../ and ../../../ stay inside tmp_path."""
    return tmp_path / "a" / "b" / "store"


@pytest.fixture
def tree(tmp_path, store_path):
    """Plants the sentinels; tree() snapshots everything under tmp_path."""
    for d in (tmp_path, tmp_path / "a", tmp_path / "a" / "b"):
        d.mkdir(parents=True, exist_ok=True)
        for name in ("secret.txt", "passwd", "psfs.json", "store.json"):
            (d / name).write_bytes(SENTINEL + b" " + name.encode())

    def snapshot() -> dict[str, tuple]:
        out = {}
        for dirpath, dirnames, filenames in os.walk(tmp_path):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                st = p.lstat()
                out[str(p.relative_to(tmp_path))] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
        return out
    return snapshot


def assert_no_path_named_after_input(root: Path) -> None:
    named = [str(p) for p in root.rglob("*") if "pwn" in str(p.relative_to(root))]
    assert not named, named


def raw_request(url: str, target: bytes | str, method: str = "GET", body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """One HTTP/1.1 request with the request-target sent exactly as given
    (httpx and http.client would normalise or refuse it); (status, body)."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    t = target.encode("latin-1") if isinstance(target, str) else target
    head = b"%s %s HTTP/1.1\r\nHost: shoal\r\nConnection: close\r\nContent-Length: %d\r\n" % (
        method.encode(), t, len(body))
    for k, v in (headers or {}).items():
        head += f"{k}: {v}\r\n".encode()
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(head + b"\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    headers_raw, _, payload = rest.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in headers_raw.lower():
        out, pos = b"", 0
        while True:
            size_end = payload.index(b"\r\n", pos)
            size = int(payload[pos:size_end], 16)
            if size == 0:
                break
            out += payload[size_end + 2:size_end + 2 + size]
            pos = size_end + 2 + size + 2
        payload = out
    return int(status_line.split()[1]), payload


async def _ingest_one(client, raw: bytes) -> int:
    r = await client.post("/records", content=raw, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["ingested"] == 1, r.text
    return r.json()["first_address"]


# ---- addresses ----------------------------------------------------------------

@pytest.mark.anyio
async def test_records_by_address(client, store, tree, live_url):
    """GET /records/{address}: the record's exact bytes at its own address;
    404 record_not_found (echoing the address) for any other integer, from
    0 to 2^64+1 and beyond, inside a record included; 422 validation_error
    for anything that is not a non-negative integer."""
    store.register_psf("t", "t")
    known = {}
    for i in range(300):
        raw = b'{"t":"%s","i":%d,"pad":"%s"}' % (b"ab"[i % 2:i % 2 + 1], i, b"p" * (i * 37 % 2000))
        known[await _ingest_one(client, raw)] = raw
    assert store.head_address > 4 * PAGE, "some records should be on disk"
    store.flush()  # nothing left for the flusher to write while the tree is compared
    before = tree()
    for a, raw in list(known.items())[::7]:
        r = await client.get(f"/records/{a}")
        assert r.status_code == 200 and r.content == raw
        for d in (8, 16, 24, 32, 56, 64, 1, 4):  # header, key pointer, values, payload, unaligned
            if a + d not in known:
                body = assert_error(await client.get(f"/records/{a + d}"), 404, "record_not_found")
                assert body["address"] == a + d and "the log holds" not in body["detail"]
    tail = store.tail_address
    for a in (0, 1, 8, 63, tail, tail + 8, (tail // PAGE + 1) * PAGE, 2**48 - 8, 2**48, 2**63, 2**64 - 1,
              2**64, 2**64 + 1, 10**40):
        body = assert_error(await client.get(f"/records/{a}"), 404, "record_not_found")
        assert body["address"] == a and str(a) in body["detail"]
        assert (body["begin_address"], body["tail_address"]) == (store.begin_address, tail)
        if not store.begin_address <= a < tail:  # outside the log: the answer says where it is
            assert f"the log holds addresses {store.begin_address} to {tail}" in body["detail"]
    for bad in ("-1", "abc", "0x40", "1e3", "64.5", "%00", "6%004", "%2e%2e", "-0x1", "%20"):
        assert_error(await client.get(f"/records/{bad}"), 422, "validation_error")
    status, body = raw_request(live_url, "/records/..")  # httpx would resolve it to /
    assert status == 422 and json.loads(body)["error"] == "validation_error"
    # Lenient integer spellings mean the integer: the same record, never another.
    first = min(known)
    for spelling in (f"+{first}", f"0{first}", f"{first}.0"):
        r = await client.get(f"/records/{spelling}")
        assert r.status_code == 200 and r.content == known[first]
    # A request-target that decodes to more segments matches no route.
    for target in ("/records/%2e%2e%2f%2e%2e%2fsecret.txt", "/records/64%2F..%2F..%2Fpasswd",
                   f"/records/{first}/../{first + 8}"):
        status, body = raw_request(live_url, target)
        assert status == 404 and json.loads(body)["error"] == "not_found"
    assert tree() == before


def test_client_and_cli_addresses(store, live_url, tmp_path, capsysbinary):
    """shoal.Client.get and `shoal get ADDRESS` answer as Store.get does:
    the record, None / "no record", or InvalidArgument / a usage error."""
    store.register_psf("f", "f")
    fake = b"FFFFFFF" + b"AAAAHS\x01\x00@\x00\x00\x00 \x00\x00\x00" + bytes(16)  # a forged header in a value
    raw = b'{"f":"%s"}' % "".join(f"\\u{b:04x}" for b in fake).encode()
    a = store.ingest(raw).first_address
    forged = a + 32 + 24 + 8  # where the fake header lies: after the key pointer and "s" + 7 bytes
    assert store._log.read_records([a])[0][forged - a:forged - a + 8] == b"AAAAHS\x01\x00"
    with shoal.Client(live_url) as c:
        assert c.get(a).raw == raw
        for x in (forged, a + 1, 0, 2**48, 2**64 + 1, 10**40):
            assert c.get(x) is None and store.get(x) is None
        for bad in (-1, True, 64.0, "64", None):
            with pytest.raises(shoal.InvalidArgument):
                c.get(bad)
            with pytest.raises(shoal.InvalidArgument):
                store.get(bad)
    data = tmp_path / "cli-data"
    store.close()
    os.replace(store.path, data)
    assert cli_main(["get", str(a), "--data", str(data)]) == 0
    assert capsysbinary.readouterr().out.rstrip(b"\n") == raw
    assert cli_main(["get", hex(a), "--data", str(data)]) == 0  # 0x...: an address typed in hex
    assert capsysbinary.readouterr().out.rstrip(b"\n") == raw
    for x in (forged, 2**64 + 1):
        assert cli_main(["get", str(x), "--data", str(data)]) == 1
        assert f"no record at address {x}".encode() in capsysbinary.readouterr().err
    for bad in ("-1", "abc", "1.5", "..", "../secret.txt"):
        assert cli_main(["get", bad, "--data", str(data)]) == 2
        assert b"address" in capsysbinary.readouterr().err


@pytest.mark.anyio
async def test_address_ranges(client, store, tree):
    """from_address / to_address of queries and scans, until_address of
    /compact: any non-negative integer, however large, is a bound (the
    answer is the oracle's records in range); anything else is 422."""
    store.register_psf("t", "t")
    known = {}
    for i in range(120):
        raw = b'{"t":"a","i":%d,"pad":"%s"}' % (i, b"p" * (i * 53 % 1500))
        known[await _ingest_one(client, raw)] = raw
    addrs = sorted(known)
    mid = addrs[len(addrs) // 2]
    store.flush()
    before = tree()
    for lo, hi in [(None, None), (0, 2**64 + 1), (2**64 + 1, None), (mid + 1, None), (None, mid + 1),
                   (mid + 8, 2**70), (2**48, 2**63), (mid, mid), (mid + 1, mid)]:
        want = [known[a] for a in reversed(addrs) if (lo is None or a >= lo) and (hi is None or a < hi)]
        rng = {k: v for k, v in (("from_address", lo), ("to_address", hi)) if v is not None}
        r = await client.post("/query", json={"psf": "t", "value": "a", **rng})
        assert r.status_code == 200 and lines(r.content) == want, (lo, hi)
        r = await client.post("/scan", json={"expr": "t == 'a'", **rng})
        assert r.status_code == 200 and lines(r.content) == want, (lo, hi)
        r = await client.get("/psfs/t/records", params={"value": "a", **rng})
        assert r.status_code == 200 and lines(r.content) == want, (lo, hi)
    for bad in (-1, "64", 1.5, True, [1], {"a": 1}):
        for field in ("from_address", "to_address"):
            assert_error(await client.post("/query", json={"psf": "t", "value": "a", field: bad}),
                         422, "validation_error")
            assert_error(await client.post("/scan", json={"expr": "t", field: bad}), 422, "validation_error")
        assert_error(await client.post("/compact", json={"until_address": bad}), 422, "validation_error")
    for bad in ("-1", "abc", "%00", "1e3", "..%2F.."):
        r = await client.get(f"/psfs/t/records?from_address={bad}")
        assert_error(r, 422, "validation_error")
    assert tree() == before
    begin = store.begin_address
    for until in (2**64 + 1, 2**70):
        r = await client.post("/compact", json={"until_address": until})
        assert r.status_code == 200, r.text
        assert r.json()["begin_after"] == max(begin, store.tail_address // PAGE * PAGE)  # never past the tail page
    for a, raw in known.items():
        rec = store.get(a)
        assert (rec.raw if rec else None) == (raw if a >= store.begin_address else None)


# ---- URL paths ----------------------------------------------------------------

# Request-targets that try to leave a route, or the tree: dot segments raw and
# percent-encoded, encoded slashes and NULs, absolute and backslashed paths.
TRAVERSALS = [
    "/../secret.txt", "/../../secret.txt", "/../../../passwd", "/%2e%2e/%2e%2e/secret.txt",
    "/%2e%2e%2f%2e%2e%2fsecret.txt", "/..%2f..%2fsecret.txt", "/..%5c..%5csecret.txt", "//secret.txt",
    "/records/..%2f..%2fsecret.txt", "/records/%2e%2e%2f%2e%2e%2f%2e%2e%2fpasswd", "/records/%00",
    "/psfs/..%2F..%2Fsecret.txt", "/psfs/../../secret.txt", "/psfs/%2e%2e%2f%2e%2e%2fpsfs.json",
    "/psfs/%00", "/psfs/pwn%00", "/psfs/..%2Fstore.json/records", "/psfs/%2e%2e/records",
    "/keys/..%2F..%2Fsecret.txt", "/keys/%2e%2e%2fpasswd", "/keys/%00", "/checkpoints/..%2F..",
    "/checkpoints/1", "/checkpoints/../../secret.txt", "/stats/..%2fsecret.txt", "/healthz/../../passwd",
    "/docs/../secret.txt", "/openapi.json%00", "/metrics/%2e%2e", "/records/..?x=..%2F..%2Fsecret.txt",
    "/psfs/" + "%2e%2e%2f" * 200 + "passwd", "/" + "a" * 8000,
]


@pytest.mark.anyio
@pytest.mark.parametrize("keyed", [False, True], ids=["unkeyed", "keyed"])
async def test_traversal_targets_touch_nothing(open_store, store_path, tree, keyed, live_url_of):
    """Every method on every traversal target: a clean 4xx JSON error (or
    the server's 400 for a target it cannot parse), no sentinel bytes in
    any answer, the tree exactly as it was."""
    store = open_store(store_path, key="k" if keyed else None)
    store.register_psf("t", "t")
    store.ingest(b'{"k":"x","t":"a"}\n{"k":"y","t":"b"}')
    store.checkpoint()
    url = live_url_of(store)
    before = tree()
    for target in TRAVERSALS:
        for method in ("GET", "DELETE", "POST", "PUT"):
            status, body = raw_request(url, target, method, body=b'{"t":"pwn"}' if method == "POST" else b"",
                                       headers={"content-type": "application/json"})
            assert 400 <= status < 500, (method, target, status, body[:200])
            assert SENTINEL not in body, (method, target)
            assert json.loads(body)["error"], (method, target)
    # Bytes no client library sends: a raw NUL, a space, a backslash, a bare
    # '..' as the target. The server refuses what it cannot parse, and stays up.
    for target in (b"/psfs/a\x00b", b"/records/6 4", b"..", b"../secret.txt", b"\\..\\secret.txt",
                   b"/psfs/\xff\xfe"):
        status, body = raw_request(url, target)
        assert 400 <= status < 500 and SENTINEL not in body, (target, status)
    assert raw_request(url, "/healthz")[0] == 200
    assert tree() == before
    assert_no_path_named_after_input(store_path.parents[2])


@pytest.fixture
def live_url_of():
    """live_url_of(store) -> the base URL of a uvicorn serving it (stopped at teardown)."""
    import threading
    import time

    import uvicorn

    from serverproc import free_port
    servers = []

    def serve(store) -> str:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                               log_level="critical", http="httptools"))
        t = threading.Thread(target=server.run, daemon=True)
        t.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert t.is_alive() and time.monotonic() < deadline
            time.sleep(0.01)
        servers.append((server, t))
        return f"http://127.0.0.1:{port}"
    yield serve
    for server, t in servers:
        server.should_exit = True
        t.join(10)


@pytest.mark.anyio
async def test_docs_assets_stay_in_their_directory(live_url, tree):
    """/docs/assets/ serves Swagger UI's files (StaticFiles over the
    package's directory): no target reaches a file beside or above it."""
    from shoal.api.docs import swagger_ui_assets
    assets = swagger_ui_assets()
    if assets is None:
        pytest.skip("Swagger UI 5 is not installed: /docs serves no files")
    outside = {p.read_bytes() for p in assets.parent.parent.rglob("*.py") if p.is_file()}
    assert outside, "the package should have Python files beside the assets"
    status, css = raw_request(live_url, "/docs/assets/swagger-ui.css")
    assert status == 200 and css == (assets / "swagger-ui.css").read_bytes()
    before = tree()
    up = ["..", "%2e%2e", "%2E%2E", ".%2e", "..%2f..", "..%5c.."]
    targets = [f"/docs/assets/{u}/{rest}" for u in up
               for rest in ("__init__.py", "../__init__.py", "../../secret.txt", "%2e%2e/%2e%2e/passwd")]
    targets += ["/docs/assets/%2fetc%2fpasswd", "/docs/assets//etc/passwd", "/docs/assets/%00",
                "/docs/assets/swagger-ui.css%00.py", "/docs/assets/~", "/docs/assets/",
                "/docs/assets/" + "../" * 30 + "etc/passwd"]
    for target in targets:
        status, body = raw_request(live_url, target)
        assert status in (400, 404, 405), (target, status)
        assert body not in outside and SENTINEL not in body, target
    assert tree() == before


# ---- PSF names ----------------------------------------------------------------

# Valid names that look like paths: never part of a file path, so all allowed.
PATHLIKE_NAMES = ["../pwn", "../../pwn", "../../../secret.txt-pwn", "/etc/pwn", "pwn/..", "pwn/../../..",
                  ".pwn", "pwn.", "..pwn", "pwn%2F..%2F", "%2e%2e%2fpwn", "pwn?x=1#frag", "pwn\\..\\..\\x",
                  "~pwn", " pwn ", "pwn\u2028x", "pwn\u202ex", "p/w/n/" + "x" * 120, "C:\\pwn", "pwn;rm -rf"]
# Invalid names: each a 422 stating the rule.
BAD_NAMES = ["", "x" * 129, "pwn\x00", "\x00", "a\x01b", "pwn\n", "\t", "\x7f", "pwn\x85", "\x1b[31mpwn"]


@pytest.mark.anyio
async def test_pathlike_psf_names(client, store, store_path, tree, live_url):
    """Register, read, query and deregister PSFs whose names look like
    paths, over HTTP (percent-encoded) and shoal.Client; checkpoint and
    reopen: the names come back as they were, and no path is named after
    one. "." and ".." too (shoal.Client encodes their dots: as a segment
    of their own, httpx resolved them away, /psfs/.. being /)."""
    raws = {}
    for v in ("a", "b", "a"):
        raws[await _ingest_one(client, b'{"t":"%s","n":%d}' % (v.encode(), len(raws)))] = v
    before = {k: v for k, v in tree().items() if not k.startswith("a/b/store")}
    for name in PATHLIKE_NAMES:
        r = await client.post("/psfs", json={"name": name, "expr": "t"})
        assert r.status_code == 201 and r.json()["name"] == name, (name, r.text)
        path = "/psfs/" + urllib.parse.quote(name, safe="")
        r = await client.get(path)
        assert r.status_code == 200 and r.json()["name"] == name, name
        r = await client.get(path + "/records", params={"value": "a", "with_address": "true"})
        assert r.status_code == 200, (name, r.text)
        assert [json.loads(x)["address"] for x in lines(r.content)] == \
            sorted((a for a, v in raws.items() if v == "a"), reverse=True), name
    with shoal.Client(live_url) as c:
        for name in [".", "..", "..."] + [n + "!" for n in PATHLIKE_NAMES]:
            assert c.register_psf(name, "t").name == name
            assert c.psf(name).name == name
            assert [r.address for r in c.query(name, "b")] == [a for a, v in raws.items() if v == "b"]
            assert c.deregister_psf(name).active is False
        assert {p.name for p in c.psfs()} >= set(PATHLIKE_NAMES) | {".", ".."}
    for name in PATHLIKE_NAMES[::2]:
        r = await client.delete("/psfs/" + urllib.parse.quote(name, safe=""))
        assert r.status_code == 200 and r.json()["name"] == name
    store.checkpoint()
    store.close()
    assert_no_path_named_after_input(store_path)
    assert {k: v for k, v in tree().items() if not k.startswith("a/b/store")} == before
    reopened = shoal.open(store_path)
    try:
        names = {p.name: p.active for p in reopened.psfs()}
        for i, name in enumerate(PATHLIKE_NAMES):
            assert names[name] is (i % 2 == 1), name
    finally:
        reopened.close()


@pytest.mark.anyio
async def test_invalid_psf_names(client, store, tree, live_url, capsys):
    """The rule (1 to 128 characters, no control characters or surrogates)
    and the name's fault in every refusal: 422 validation_error from POST
    /psfs, InvalidArgument from the library and shoal.Client. Looking up
    or deregistering such a name is a 404: no PSF can have it."""
    before = tree()
    for name in BAD_NAMES + ["\ud800pwn", "\udcffpwn"]:  # lone surrogates: \udcff is how argv holds a byte 0xff
        r = await client.post("/psfs", content=json.dumps({"name": name, "expr": "t"}),  # escaped: no UTF-8 for them
                              headers={"content-type": "application/json"})
        body = assert_error(r, 422, "validation_error")
        assert "1 to 128 characters" in body["detail"] and "control character" in body["detail"], body
        assert body["errors"][0]["loc"] == ["body", "name"]
        with pytest.raises(shoal.InvalidArgument, match="1 to 128 characters"):
            store.register_psf(name, "t")
        with shoal.Client(live_url) as c, pytest.raises(shoal.InvalidArgument, match="1 to 128 characters"):
            c.register_psf(name, "t")
    for bad in (None, 5, ["x"], {"a": 1}):
        assert_error(await client.post("/psfs", json={"name": bad, "expr": "t"}), 422, "validation_error")
    for name in BAD_NAMES[1:]:
        path = "/psfs/" + urllib.parse.quote(name, safe="")
        for r in (await client.get(path), await client.delete(path), await client.get(path + "/records")):
            assert_error(r, 404, "psf_not_found")
    assert store.psfs() == []
    assert tree() == before
    # A command line holds an undecodable byte as a lone surrogate (0xff: "\udcff"),
    # which shoal.Client sends escaped (httpx raised UnicodeEncodeError: a traceback).
    for target in (["--url", live_url], ["--data", str(store.path.parent / "cli")]):
        assert cli_main(["psf", "add", "\udcffpwn", "t", *target]) == 1
        assert "1 to 128 characters" in capsys.readouterr().err


@pytest.mark.anyio
async def test_a_line_break_ends_no_name(client, store):
    """/psfs/t%0A names "t\n", not "t": Starlette's path pattern stopped at
    a line break and matched before a final one, so this request read, and
    DELETE deregistered, the PSF "t"."""
    store.register_psf("t", "t")
    for suffix in ("%0A", "%0D%0A", "%0A%0A", "%0D"):
        for method in ("GET", "DELETE"):
            body = assert_error(await client.request(method, f"/psfs/t{suffix}"), 404, "psf_not_found")
            assert repr(urllib.parse.unquote("t" + suffix)) in body["detail"]
        assert_error(await client.get(f"/psfs/t{suffix}/records"), 404, "psf_not_found")
    assert store.psf("t").active
    r = await client.get("/psfs/t%0A/records/records")  # the name is "t\n/records"
    assert_error(r, 404, "psf_not_found")


def test_psf_names_in_the_cli(tmp_path, capsys, tree):
    data = tmp_path / "cli"
    for name in ("../pwn", "../../secret.txt", "/etc/pwn", "..", "pwn/../../x"):
        assert cli_main(["psf", "add", name, "t", "--data", str(data)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert cli_main(["psf", "ls", "--json", "--data", str(data)]) == 0
    assert {p["name"] for p in json.loads(capsys.readouterr().out)} == \
        {"../pwn", "../../secret.txt", "/etc/pwn", "..", "pwn/../../x"}
    for name in ("pwn\x01", "", "x" * 129, "\x1b[2Jpwn"):
        assert cli_main(["psf", "add", name, "t", "--data", str(data)]) == 1
        assert "1 to 128 characters" in capsys.readouterr().err
    assert cli_main(["psf", "rm", "../../secret.txt", "--data", str(data)]) == 0
    assert (tmp_path / "secret.txt").read_bytes().startswith(SENTINEL)
    assert_no_path_named_after_input(tmp_path)


# ---- keys -----------------------------------------------------------------------

HOSTILE_KEYS = ["pwn", "../pwn", "../../pwn", "../../../secret.txt", "/etc/passwd-pwn", "..", ".", "", "pwn/x",
                "%2e%2e%2fpwn", "pwn\x00", "\x00", "\x01pwn\x1f", "pwn\u2028", "\u202epwn", "pwn😀",
                "?pwn#x", "\\..\\pwn", " pwn ", "k" * 3000 + "pwn", "null", "true", "[1]", "{}", "42",
                0, -1, 1.5, 10**20]


@pytest.fixture
def keyed(open_store, store_path):
    store = open_store(store_path, key="k")
    store.register_psf("t", "t")
    return store


@pytest.mark.anyio
async def test_hostile_keys(keyed, tree, live_url_of):
    """GET and DELETE /keys/{key} (the key's JSON text, percent-encoded),
    shoal.Client.get_key/delete_key: every key reads back its own record at
    the address ingest answered, deletes, and then reads as absent; nothing
    is named after a key."""
    url = live_url_of(keyed)
    http = httpx.AsyncClient(base_url=url)
    addresses = {}
    try:
        for i, key in enumerate(HOSTILE_KEYS):
            raw = json.dumps({"k": key, "t": "a", "i": i}, ensure_ascii=False).encode()
            addresses[i] = (await _ingest_one(http, raw), raw)
        before = tree()
        for i, key in enumerate(HOSTILE_KEYS):
            a, raw = addresses[i]
            path = "/keys/" + urllib.parse.quote(json.dumps(key), safe="")
            r = await http.get(path)
            assert r.status_code == 200 and r.content == raw, (key, r.text[:200])
            assert int(r.headers["X-Shoal-Address"]) == a
            with shoal.Client(url) as c:
                rec = c.get_key(key)
                assert rec.address == a and rec.raw == raw
        # A bare (non-JSON) string in the path is the string itself, line
        # breaks included (a final one once named the key without it).
        for key in ("../pwn", "../../pwn", "pwn/x", "?pwn#x", " pwn ", "pwn\u2028"):
            r = await http.get("/keys/" + urllib.parse.quote(key, safe=""))
            assert r.status_code == 200 and json.loads(r.content)["k"] == key
        for key in ("pwn\n", "pwn\r\n"):
            assert_error(await http.get("/keys/" + urllib.parse.quote(key, safe="")), 404, "key_not_found")
            assert_error(await http.delete("/keys/" + urllib.parse.quote(key, safe="")), 404, "key_not_found")
        assert (await http.get("/keys/pwn")).status_code == 200  # still there
        assert tree() == before
        for key in ("../pwn", "..", "", "pwn\x00", 0):
            body = assert_error(await http.get("/keys/" + urllib.parse.quote(json.dumps("no" + str(key)),
                                                                               safe="")), 404, "key_not_found")
            assert body["key"] == "no" + str(key)
        for i, key in enumerate(HOSTILE_KEYS):
            path = "/keys/" + urllib.parse.quote(json.dumps(key), safe="")
            if i % 2:
                r = await http.delete(path)
                assert r.status_code == 200 and r.json()["deleted"] is True, key
            else:
                with shoal.Client(url) as c:
                    assert c.delete_key(key) is True
            assert_error(await http.get(path), 404, "key_not_found")
            assert_error(await http.delete(path), 404, "key_not_found")
        for bad in ("%5B1%5D", "%7B%7D", "null", "true"):  # not a string or a number: not a key
            r = await http.get(f"/keys/{bad}")
            assert r.status_code in (400, 404) and r.json()["error"] in ("invalid_argument", "key_not_found")
    finally:
        await http.aclose()
    keyed.close()
    assert_no_path_named_after_input(keyed.path.parents[2])


def test_hostile_keys_in_the_cli(tmp_path, capsys):
    data = tmp_path / "cli"
    with shoal.open(data, key="k") as store:
        want = {key: store.ingest(json.dumps({"k": key}).encode()).first_address
                for key in ("../pwn", "..", "/etc/passwd-pwn", "pwn\x01")}
    for key, a in want.items():
        typed = key if key != "pwn\x01" else json.dumps(key)  # a control character, typed as JSON
        assert cli_main(["get", "--key", typed, "--with-address", "--data", str(data)]) == 0
        line = json.loads(capsys.readouterr().out)
        assert line["address"] == a and line["record"]["k"] == key
    assert cli_main(["get", "--key", "../../nope", "--data", str(data)]) == 1
    assert "no live record has key '../../nope'" in capsys.readouterr().err
    assert cli_main(["delete", "../pwn", "--data", str(data)]) == 0
    assert cli_main(["get", "--key", "../pwn", "--data", str(data)]) == 1
    assert_no_path_named_after_input(tmp_path)
