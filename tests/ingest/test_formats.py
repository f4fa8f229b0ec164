"""Input formats and sources, end to end through a store: JSONTestSuite
documents, NDJSON details (blank lines, CRLF, a missing final newline), JSON
arrays, gzip (multi-member, truncated, corrupt), paths, file objects and
iterables of tiny chunks. Expected records come from independent framing
(splitting lines, json.JSONDecoder.raw_decode for arrays, orjson for
validity) and are compared by raw bytes and order."""
from __future__ import annotations

import gzip
import io
import json
import zlib

import orjson
import pytest
from oracle import ALL, Log, as_pairs, strip_ws

import shoal
from shoal import sample
from shoal.config import KiB, MiB

from datadir import real_path  # noqa: E402


def _orjson_accepts(data: bytes) -> bool:
    try:
        orjson.loads(data)
        return True
    except orjson.JSONDecodeError:
        return False


def _stored(store, since: int = 0) -> list[bytes]:
    return [r.raw for r in store.scan(ALL, order="oldest", from_address=since)]


@pytest.fixture
def big_page_store(open_store, tmp_path):
    """Pages large enough for every JSONTestSuite file (the largest is 250 KB),
    so their rejections come from the parser, not the size limit."""
    return open_store(tmp_path / "big", page_size_bytes=512 * KiB, memory_budget_bytes=1 * MiB,
                      segment_size_bytes=1 * MiB)


# ---- JSONTestSuite ----

def _suite(files, prefix):
    return sorted((n, d) for n, d in files.items() if n.startswith(prefix))


def test_testsuite_y_files_are_accepted_and_come_back(big_page_store, testsuite_files):
    store = big_page_store
    for name, data in _suite(testsuite_files, "y_"):
        tail = store.tail_address
        res = store.ingest(data, format="json")
        assert (res.ingested, res.rejected, res.errors) == (1, 0, []), name
        assert res.first_address == res.last_address == tail, name
        rec = store.get(res.first_address)
        assert rec is not None and rec.raw == data.strip(b" \t\r\n"), name  # the value, trimmed
        assert rec.json() == orjson.loads(data), name


def test_testsuite_n_files_are_rejected_with_a_reason(big_page_store, testsuite_files):
    store = big_page_store
    for name, data in _suite(testsuite_files, "n_"):
        tail = store.tail_address
        res = store.ingest(data, format="json")
        assert (res.ingested, res.rejected) == (0, 1), name
        assert len(res.errors) == 1 and res.errors[0].reason and res.errors[0].line == 1, name
        assert store.tail_address == tail, name
    assert list(store.scan(ALL)) == []


def test_testsuite_n_files_in_reject_mode_raise(store, testsuite_files):
    tail = store.tail_address
    for name, data in _suite(testsuite_files, "n_"):
        with pytest.raises(shoal.IngestRejected) as e:
            store.ingest(data, format="json", on_error="reject")
        assert e.value.result.rejected == 1 and e.value.result.errors[0].reason, name
    assert store.tail_address == tail and list(store.scan(ALL)) == []


def test_testsuite_i_files_follow_orjson(big_page_store, testsuite_files):
    """Implementation-defined inputs: shoal accepts exactly what orjson accepts,
    so every stored record can be loaded again."""
    store = big_page_store
    for name, data in _suite(testsuite_files, "i_"):
        res = store.ingest(data, format="json")
        if _orjson_accepts(data):
            assert (res.ingested, res.rejected) == (1, 0), name
            assert store.get(res.first_address).raw == data.strip(b" \t\r\n"), name
        else:
            assert (res.ingested, res.rejected) == (0, 1), name
            assert res.errors[0].reason, name


def _one_line(data: bytes) -> bool:
    s = strip_ws(data)
    return bool(s) and b"\n" not in s


@pytest.mark.parametrize("fmt", ["ndjson", "auto"])
def test_testsuite_as_ndjson(store, testsuite_files, fmt):
    """y_ and n_ files without inner newlines as the lines of one NDJSON input:
    y_ lines stored (trimmed), n_ lines rejected with their line numbers."""
    ys = [d for n, d in _suite(testsuite_files, "y_") if _one_line(d)]
    ns = [d for n, d in _suite(testsuite_files, "n_") if _one_line(d) and len(d) < 4 * KiB]
    assert len(ys) > 80 and len(ns) > 100
    lines, bad_lines, good = [], [], []
    # Start with an object so "auto" cannot take the input for an array.
    for d, ok in [(b'{"first": true}', True)] + [(d, True) for d in ys] + [(d, False) for d in ns]:
        lines.append(strip_ws(d))
        if ok:
            good.append(strip_ws(d))
        else:
            bad_lines.append(len(lines))
    res = store.ingest(b"\n".join(lines) + b"\n", format=fmt)
    assert res.ingested == len(good) and res.rejected == len(bad_lines)
    assert [e.line for e in res.errors] == bad_lines
    assert all(e.reason for e in res.errors)
    assert _stored(store) == good


# ---- NDJSON details ----

RECS = [b'{"a":1}', b'{"b":"x y"}', b'[1,2,3]', b'"s"', b"42", b"true", b'{"c":{"d":[{}]}}']


@pytest.mark.parametrize("text, expected", [
    (b"\n".join(RECS) + b"\n", RECS),
    (b"\n".join(RECS), RECS),  # no final newline
    (b"\r\n".join(RECS) + b"\r\n", RECS),  # CRLF
    (b"\r\n".join(RECS), RECS),
    (b"\n\n" + b"\n\n\n".join(RECS) + b"\n\n", RECS),  # blank lines
    (b" \t\n".join(b"  " + r + b" \t" for r in RECS), RECS),  # whitespace around records
    (b"\n \r\n\t\n", []),
    (b"", []),
    (b"\n", []),
    (b"{}", [b"{}"]),
])
def test_ndjson_framing(store, text, expected):
    tail = store.tail_address
    res = store.ingest(text)
    assert (res.ingested, res.rejected, res.errors) == (len(expected), 0, [])
    assert _stored(store) == expected
    if not expected:
        assert store.tail_address == tail and res.first_address is None


def test_blank_lines_count_in_error_line_numbers(store):
    text = b'{"a":1}\n\n\r\n{bad\n   \n{"b":2}\n[1,]\n\n{"c":3}'
    res = store.ingest(text)
    assert res.ingested == 3 and [e.line for e in res.errors] == [4, 7]
    assert _stored(store) == [b'{"a":1}', b'{"b":2}', b'{"c":3}']


def test_inner_whitespace_is_kept(store):
    recs = [b'{ "a" : [ 1 , 2 ] ,\t"b" : { } }', b'[ ]', b'"  spaced  "']
    store.ingest(b"\n".join(recs))
    assert _stored(store) == recs


# ---- JSON arrays ----

def _array_elements(text: bytes) -> list[bytes]:
    """Element texts of a top-level JSON array, framed with the stdlib decoder."""
    s = text.decode("utf-8")
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    i = 0
    while s[i] in ws:
        i += 1
    assert s[i] == "["
    i += 1
    out = []
    while True:
        while s[i] in ws:
            i += 1
        if s[i] == "]":
            break
        _, j = dec.raw_decode(s, i)
        out.append(s[i:j].encode("utf-8"))
        i = j
        while s[i] in ws:
            i += 1
        if s[i] == ",":
            i += 1
    return out


def _array_file(path, records, pretty: bool):
    """A gzip JSON array of these records: pretty-printed, or on one line."""
    values = [orjson.loads(r) for r in records]
    text = json.dumps(values, indent=2, ensure_ascii=False) if pretty else b"[" + b",".join(records) + b"]"
    path.write_bytes(gzip.compress(text.encode() if pretty else text, mtime=0))
    return path


@pytest.mark.parametrize("name, ndjson_name, fmt", [
    ("github_events.json.gz", "github_events", "auto"),  # pretty-printed: detected as an array
    ("github_events.json.gz", "github_events", "array"),
    ("twitter_timeline.json.gz", "twitter_timeline", "array"),  # one line: must be named
])
@pytest.mark.parametrize("source", ["generated", "real"])
def test_array_input(store, generated, real_data, tmp_path, source, name, ndjson_name, fmt):
    if source == "real":  # the API answers (simdjson's files) and their NDJSON conversions
        path, records = real_path("simdjson", name), real_data(ndjson_name)
    else:
        records = generated("github_events", 60) if ndjson_name == "github_events" else generated("statuses", 20)
        path = _array_file(tmp_path / name, records, pretty=ndjson_name == "github_events")
    elements = _array_elements(gzip.decompress(path.read_bytes()))
    res = store.ingest(path, format=fmt)
    assert (res.ingested, res.rejected) == (len(elements), 0)
    assert _stored(store) == [strip_ws(e) for e in elements]
    # The same records as the NDJSON form of the same source.
    assert [orjson.loads(e) for e in elements] == [orjson.loads(r) for r in records]


@pytest.mark.parametrize("text, good, bad", [
    (b"[]", [], []),
    (b"  [ ]  ", [], []),
    (b'[{"a":1}]', [b'{"a":1}'], []),
    (b'[\n {"a": 1},\n {"b": [1, 2]} ,\n3,\n"x" ]\n', [b'{"a": 1}', b'{"b": [1, 2]}', b"3", b'"x"'], []),
    (b'[{"a":1}, {bad}, {"c":3}]', [b'{"a":1}', b'{"c":3}'], [2]),
    (b'[1, nul, 2, [1,], 3]', [b"1", b"2", b"3"], [2, 4]),
    (b'[{"s": "]"}, {"t": "[,{"}]', [b'{"s": "]"}', b'{"t": "[,{"}'], []),
])
def test_array_elements_and_errors(store, text, good, bad):
    res = store.ingest(text, format="array")
    assert [e.line for e in res.errors] == bad and all(e.reason for e in res.errors)
    assert res.ingested == len(good)
    assert _stored(store) == good


def test_one_line_array_is_one_ndjson_record_in_auto_mode(store, generated, tmp_path):
    """Documented ambiguity: a complete one-line array is an NDJSON record."""
    store.ingest(b'[{"a":1},{"b":2}]\n')
    assert _stored(store) == [b'[{"a":1},{"b":2}]']
    text = gzip.decompress(_array_file(tmp_path / "a.json.gz", generated("statuses", 20), pretty=False).read_bytes())
    assert len(text) > 32 * KiB and b"\n" not in text
    res = store.ingest(text)  # one long line: one record, too large for 16 KiB pages
    assert (res.ingested, res.rejected) == (0, 1)
    size = len(strip_ws(text))
    assert res.errors[0].reason == (f"record too large: {size:,} bytes, over the 16,352 bytes that fit in one "
                                    f"16 KiB log page")


@pytest.mark.parametrize("text", [b'[{"a":1}, {"b":2}', b'{"a":1}', b"[1 2]"])
def test_malformed_arrays_are_reported(store, text):
    res = store.ingest(text, format="array")
    assert res.rejected >= 1 and res.errors and all(e.reason for e in res.errors)
    for raw in _stored(store):
        assert _orjson_accepts(raw)


# ---- gzip ----

def _members(raws: list[bytes], n: int) -> bytes:
    text = b"\n".join(raws) + b"\n"
    cut = [len(text) * k // n for k in range(n + 1)]
    return b"".join(gzip.compress(text[cut[k]:cut[k + 1]], mtime=0) for k in range(n))


@pytest.mark.parametrize("members", [1, 3, 17])
def test_gzip_members(store, generated, members):
    raws = list(generated("github_events", 500))
    res = store.ingest(_members(raws, members))
    assert res.ingested == len(raws) and res.rejected == 0
    assert _stored(store) == raws


def test_gzip_path_and_file_object(store, generated, tmp_path):
    path = sample.write("github_events", 1000, tmp_path / "events.ndjson.gz")
    raws = list(generated("github_events", 1000))
    assert store.ingest(path).ingested == len(raws)
    tail = store.tail_address
    with open(path, "rb") as f:
        assert store.ingest(f).ingested == len(raws)
    with gzip.open(path, "rb") as f:  # an already-decompressing file object
        assert store.ingest(f).ingested == len(raws)
    assert _stored(store) == raws * 3
    assert _stored(store, tail) == raws * 2


def test_truncated_gzip_is_a_clear_error(store, generated):
    raws = list(generated("jenkins_jobs", 875))
    data = gzip.compress(b"\n".join(raws) + b"\n", mtime=0)
    for cut in (len(data) - 4, len(data) // 2, 12):
        with pytest.raises(shoal.ParseError, match="gzip"):
            store.ingest(data[:cut], on_error="reject")
        assert list(store.scan(ALL)) == []  # reject: nothing stored
    with pytest.raises(shoal.ParseError, match="gzip"):
        store.ingest(data[: len(data) // 2])
    # What skip mode stored before the error is a prefix of the input, and
    # the store goes on working.
    stored = _stored(store)
    assert stored == raws[: len(stored)]
    store.register_psf("color", "color")
    store.ingest(data)
    log = Log(stored + raws)
    log.bind(store)
    assert as_pairs(store.query("color", "blue")) == log.query("color", "blue")


def test_corrupt_gzip_is_a_clear_error(store, generated):
    raws = list(generated("jenkins_jobs", 875))
    data = bytearray(gzip.compress(b"\n".join(raws) + b"\n", mtime=0))
    data[len(data) // 2] ^= 0xFF
    data[-6] ^= 0xFF  # and the CRC
    with pytest.raises(shoal.ParseError, match="gzip"):
        store.ingest(bytes(data), on_error="reject")
    assert list(store.scan(ALL)) == []


def test_garbage_after_gzip_is_an_error(store):
    with pytest.raises(shoal.ParseError):
        store.ingest(gzip.compress(b'{"a":1}\n') + b"not gzip", on_error="reject")
    assert list(store.scan(ALL)) == []


# ---- sources ----

class _OneShot(io.RawIOBase):
    """A non-seekable binary stream (like a pipe or a socket)."""

    def __init__(self, data: bytes, step: int = 7):
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def _text(raws):
    return b"\n".join(raws) + b"\n"


@pytest.mark.parametrize("make", [
    lambda t, p: t,
    lambda t, p: bytearray(t),
    lambda t, p: memoryview(t),
    lambda t, p: p,
    lambda t, p: str(p),
    lambda t, p: io.BytesIO(t),
    lambda t, p: _OneShot(t),
    lambda t, p: io.BufferedReader(_OneShot(t, 4096)),
    lambda t, p: [t[i:i + 1] for i in range(len(t))],
    lambda t, p: (t[i:i + 3] for i in range(0, len(t), 3)),
    lambda t, p: [memoryview(t)[i:i + 1000] for i in range(0, len(t), 1000)],
    lambda t, p: [gzip.compress(t)[i:i + 5] for i in range(0, len(gzip.compress(t)), 5)],
], ids=["bytes", "bytearray", "memoryview", "path", "str-path", "BytesIO", "raw-stream", "buffered-stream",
        "1-byte-chunks", "3-byte-generator", "memoryview-chunks", "gzip-5-byte-chunks"])
@pytest.mark.parametrize("on_error", ["skip", "reject"])
def test_sources(store, generated, tmp_path, make, on_error):
    raws = list(generated("statuses", 20))
    text = _text(raws)
    path = tmp_path / "input.ndjson"
    path.write_bytes(text)
    res = store.ingest(make(text, path), on_error=on_error)
    assert (res.ingested, res.rejected) == (len(raws), 0)
    assert _stored(store) == raws
    log = Log(raws)
    log.bind(store)
    assert (res.first_address, res.last_address) == (log.addresses[0], log.addresses[-1])


@pytest.mark.parametrize("data", [b"", [], [b""], [b"", b""], io.BytesIO(b""), _OneShot(b"")])
def test_empty_input(store, data):
    tail = store.tail_address
    res = store.ingest(data)
    assert (res.ingested, res.rejected, res.errors, res.first_address) == (0, 0, [], None)
    assert store.tail_address == tail


def test_empty_gzip(store):
    res = store.ingest(gzip.compress(b""))
    assert (res.ingested, res.rejected) == (0, 0)


@pytest.mark.parametrize("bad", [12, 1.5, None, object(), [1, 2], [b"{}", None]])
def test_unsupported_inputs(store, bad):
    with pytest.raises(shoal.InvalidArgument):
        store.ingest(bad)
    assert list(store.scan(ALL)) == []


def test_missing_path_and_text_mode_file(store, tmp_path):
    with pytest.raises(shoal.InvalidArgument):
        store.ingest(tmp_path / "nope.ndjson")
    p = tmp_path / "t.ndjson"
    p.write_text('{"a":1}\n')
    with open(p) as f, pytest.raises(shoal.InvalidArgument):
        store.ingest(f)


@pytest.mark.parametrize("source", ["generated", "real"])
def test_json_format_with_big_document(open_store, generated, tmp_path, source):
    """format="json" stores a whole document (a Twitter search answer, ~600 KB
    pretty-printed: twitter.json, or one of generated statuses) as one record."""
    if source == "real":
        path, n = real_path("simdjson", "twitter.json.gz"), 100
    else:
        n = 250
        path = tmp_path / "search.json.gz"
        document = {"statuses": [orjson.loads(r) for r in generated("statuses", n)],
                    "search_metadata": {"count": n, "query": "%E5%A4%A9%E6%B0%97", "max_id": 2**62}}
        path.write_bytes(gzip.compress(json.dumps(document, indent=1, ensure_ascii=False).encode() + b"\n"))
    data = gzip.decompress(path.read_bytes())
    assert 400 * KiB < len(data) < 1 * MiB
    store = open_store(tmp_path / "big", page_size_bytes=1 * MiB, memory_budget_bytes=2 * MiB,
                       segment_size_bytes=1 * MiB)
    res = store.ingest(path, format="json")
    assert (res.ingested, res.rejected) == (1, 0)
    assert store.get(res.first_address).raw == data.strip(b" \t\r\n")
    store.register_psf("n", "length(statuses)")
    assert [r.address for r in store.query("n", n)] == [res.first_address]
    small = open_store(tmp_path / "small")
    res = small.ingest(path, format="json")
    assert (res.ingested, res.rejected) == (0, 1)  # one document is not read past the limit: its size is unknown
    assert res.errors[0].reason == "record too large: over the 16,352 bytes that fit in one 16 KiB log page"


def test_unknown_format_and_on_error(store):
    with pytest.raises(shoal.InvalidArgument):
        store.ingest(b"{}", format="yaml")
    with pytest.raises(shoal.InvalidArgument):
        store.ingest(b"{}", on_error="ignore")
    assert list(store.scan(ALL)) == []


def test_zlib_stream_is_not_gzip(store):
    """Raw zlib data has no gzip magic: it is (invalid) text, reported per line."""
    res = store.ingest(zlib.compress(b'{"a":1}\n'))
    assert res.ingested == 0 and res.rejected >= 1
