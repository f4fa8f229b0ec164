"""JSONTestSuite through the HTTP API of a live server (uvicorn on loopback).

Every file of test_parsing/ goes in three ways: (a) alone, as an
application/json body (format "document": an array's elements are the
records, any other value is one record); (b) as an element of an array
body; (c) as one line of NDJSON bodies mixing y_, n_ and i_ files. The
expected answers come from orjson alone: a text is valid iff orjson.loads
takes it (shoal documents exactly that, which decides the i_ files too; the
suite's own y_/n_ verdicts are checked against orjson first), a stored record
is its value without the JSON whitespace around it, and an array's records
are its elements, found by checking that the stored texts, commas and
whitespace spell the array exactly and load to orjson's elements.

What is stored is read back twice: by a scan (one NDJSON line per record,
line breaks turned into spaces) and by GET /records/{address} (the exact
bytes); and GET /stats must count what the scan finds.
"""
from __future__ import annotations

import random

import httpx
import orjson
import pytest
from oracle import orjson_accepts, strip_ws

from shoal.config import KiB, MiB

from .conftest import pairs

JSON_WS = b" \t\r\n"
DOCUMENT = {"Content-Type": "application/json"}
NDJSON = {"Content-Type": "application/x-ndjson"}
MAX_ERRORS_SHOWN = 100  # the API lists the first 100 rejected records (errors_total counts all)


@pytest.fixture
def store(open_store, tmp_path):
    """Pages big enough for every suite file (the largest is 250 KB), so the
    parser rejects n_ files, not the record size limit."""
    return open_store(tmp_path / "big", page_size_bytes=512 * KiB, memory_budget_bytes=1 * MiB,
                      segment_size_bytes=1 * MiB)


@pytest.fixture
def http(live_url):
    with httpx.Client(base_url=live_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def suite(testsuite_files) -> list[tuple[str, bytes, bool]]:
    """(name, bytes, valid) for every file; valid is orjson's verdict, which
    must agree with the suite's for y_ (accept) and n_ (reject) files."""
    out = []
    for name, data in sorted(testsuite_files.items()):
        valid = orjson_accepts(data)
        if name.startswith("y_"):
            assert valid, f"orjson rejects {name}: the oracle is wrong for it"
        elif name.startswith("n_"):
            assert not valid, f"orjson accepts {name}: the oracle is wrong for it"
        else:
            assert name.startswith("i_"), name
        out.append((name, data, valid))
    assert len(out) > 300
    return out


# ---- reading the store back ---------------------------------------------------

def _tail(http: httpx.Client) -> int:
    return http.get("/healthz").json()["tail_address"]


def _stored(http: httpx.Client, since: int = 0) -> list[tuple[int, bytes]]:
    """(address, exact bytes) of every record from `since` on, oldest first:
    found by a scan, each read again by address. The scan's line is the
    record with its line breaks as spaces (one record, one NDJSON line)."""
    r = http.post("/scan?with_address=true", json={"expr": "`true`", "order": "oldest", "from_address": since})
    assert r.status_code == 200, r.text
    out = []
    for address, line in pairs(r.content):
        g = http.get(f"/records/{address}")
        assert g.status_code == 200, (address, g.text)
        assert line == g.content.replace(b"\r", b" ").replace(b"\n", b" "), address
        out.append((address, g.content))
    return out


def _assert_counts_agree(http: httpx.Client) -> int:
    """GET /stats counts exactly the records a scan finds."""
    n = len(pairs(http.post("/scan?with_address=true", json={"expr": "`true`"}).content))
    assert http.get("/stats").json()["records"] == n
    return n


# ---- the oracle -----------------------------------------------------------------

def _spells_array(text: bytes, raws: list[bytes]) -> bool:
    """Is `text` exactly '[' raw (',' raw)* ']' with JSON whitespace between
    tokens (and around the array)? Then raws are its element texts."""
    text = text.strip(JSON_WS)
    if not text.startswith(b"[") or not text.endswith(b"]"):
        return False
    pos = 1
    for i, raw in enumerate(raws):
        while text[pos:pos + 1] in (b" ", b"\t", b"\r", b"\n"):
            pos += 1
        if i:
            if text[pos:pos + 1] != b",":
                return False
            pos += 1
            while text[pos:pos + 1] in (b" ", b"\t", b"\r", b"\n"):
                pos += 1
        if not text.startswith(raw, pos):
            return False
        pos += len(raw)
    return text[pos:-1].strip(JSON_WS) == b""


def _in_order(body: bytes, raws: list[bytes]) -> bool:
    """Do the raws occur in body in this order, without overlapping?"""
    pos = 0
    for raw in raws:
        at = body.find(raw, pos)
        if at < 0:
            return False
        pos = at + len(raw)
    return True


def _check_answer(r: httpx.Response, ingested: int, rejected: int, what: str) -> dict:
    """The status the contract gives these counts, and the counts."""
    body = r.json()
    if ingested:
        assert r.status_code == 200, (what, r.status_code, r.text)
    elif rejected:
        assert r.status_code == 422 and body["error"] == "no_valid_records", (what, r.status_code, r.text)
    else:
        assert r.status_code == 400 and body["error"] == "empty_body", (what, r.status_code, r.text)
    assert (body["ingested"], body["errors_total"]) == (ingested, rejected), (what, body)
    for e in body["errors"]:
        assert e["line"] >= 1 and e["error"], (what, e)
    return body


def _post_document(http: httpx.Client, body: bytes, what: str) -> tuple[list[bytes], dict]:
    """POST one application/json body and check its answer and what it
    stored against orjson; returns the records stored and the answer."""
    tail = _tail(http)
    r = http.post("/records", content=body, headers=DOCUMENT)
    stored = [raw for _, raw in _stored(http, tail)]
    text = strip_ws(body)
    if orjson_accepts(body):
        value = orjson.loads(body)
        if text.startswith(b"["):  # an array: its elements are the records
            assert _spells_array(body, stored) if value else stored == [], (what, stored)
            assert [orjson.loads(s) for s in stored] == value, what
        else:
            assert stored == [text], (what, stored)
        answer = _check_answer(r, len(stored), 0, what)
    elif not text.startswith(b"["):  # one record, and a bad one
        assert stored == [], (what, stored)
        answer = _check_answer(r, 0, 1, what)
        assert answer["errors"][0]["line"] == 1, (what, answer)
    else:
        # A bad array: elements framed before the damage, and good elements
        # beside bad ones, are stored; what is stored is valid and in order.
        assert all(orjson_accepts(s) for s in stored) and _in_order(body, stored), (what, stored)
        answer = r.json()
        assert answer.get("errors_total", 0) >= 1, (what, r.text)
        _check_answer(r, len(stored), answer["errors_total"], what)
    return stored, answer


# ---- (a) one file per request, application/json ------------------------------------

def test_each_file_as_a_document(http, suite):
    """Each file alone: a valid one (every y_, an i_ orjson takes) is stored
    byte for byte, its elements if it is an array; an invalid one stores
    nothing, answered 422 no_valid_records with line 1 and a reason; an
    invalid array may keep its valid elements (those before the damage).
    i_ files are accepted exactly when orjson accepts them."""
    total = 0
    verdicts = {}
    for name, data, valid in suite:
        if not strip_ws(data):
            continue  # no value at all: an empty body (test_empty_and_blank_bodies_are_empty_body)
        stored, answer = _post_document(http, data, name)
        total += len(stored)
        if name.startswith("i_"):
            verdicts[name] = "rejected" if answer["errors_total"] else "accepted"
    # i_ files: shoal's verdict is orjson's (README: "JSON accepted").
    assert verdicts == {n: "accepted" if v else "rejected" for n, _, v in suite if n.startswith("i_")}
    assert _assert_counts_agree(http) == total


def test_array_damage_offsets_point_into_the_body(http, suite):
    """Damage to an array (README: 'reported once, as an error whose offset
    is the byte in the whole input where the array went wrong') is never at
    the opening bracket, so its offset lies in 1..len(body)."""
    wrong = {}
    for name, data, valid in suite:
        if valid or not strip_ws(data).startswith(b"["):
            continue
        r = http.post("/records", content=data, headers=DOCUMENT)
        start = len(data) - len(data.lstrip(JSON_WS))
        offsets = [e["offset"] for e in r.json()["errors"] if e["error"] == "malformed JSON array"]
        if not all(start < o <= len(data) for o in offsets):
            wrong[name] = offsets
    assert wrong == {}


@pytest.mark.parametrize("headers", [pytest.param(DOCUMENT, id="json"),
                                     pytest.param(NDJSON, id="ndjson"), pytest.param({}, id="none")])
@pytest.mark.parametrize("body", [b"", b" ", b"\n\t \r\n"], ids=["empty", "space", "blank"])
def test_empty_and_blank_bodies_are_empty_body(http, body, headers):
    """The contract: a body with no records is 400 empty_body whatever its
    type (JSONTestSuite's n_structure_no_data and n_single_space are such
    bodies), and nothing is stored."""
    r = http.post("/records", content=body, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "empty_body", r.text
    assert (r.json()["ingested"], r.json()["errors_total"]) == (0, 0), r.text
    assert _assert_counts_agree(http) == 0


# ---- (b) files as array elements ------------------------------------------------------

def test_each_file_as_an_array_element(http, suite):
    """Each file between two good elements of an array body. A valid file is
    stored as exactly its text, between them; an invalid one is rejected, and
    the elements before it are stored. The element after it is lost only if
    the file broke the array itself, which is then reported once as a
    malformed array."""
    total = 0
    for i, (name, data, valid) in enumerate(suite):
        before, after = b'{"before":%d}' % i, b'{"after":%d}' % i
        body = b"[" + before + b",\n" + data + b"\n," + after + b"]"
        stored, answer = _post_document(http, body, name)
        total += len(stored)
        assert stored[:1] == [before], (name, stored)
        if valid:
            assert stored == [before, strip_ws(data), after], name
            continue
        assert answer["errors_total"] >= 1, name
        reasons = [e["error"] for e in answer["errors"]]
        if stored[-1] != after:
            assert "malformed JSON array" in reasons, (name, answer)
    assert _assert_counts_agree(http) == total


def test_all_valid_files_in_one_array(http, suite):
    """Every valid file (y_, and the i_ orjson takes) as the elements of one
    array: each stored once, in order, byte for byte."""
    valid = [data for _, data, ok in suite if ok]
    body = b"[" + b",".join(valid) + b"]"
    stored, answer = _post_document(http, body, "all valid files")
    assert stored == [strip_ws(d) for d in valid]
    assert answer["errors_total"] == 0
    assert _assert_counts_agree(http) == len(valid)


# ---- (c) one NDJSON stream of all the files --------------------------------------------

def test_all_files_mixed_as_ndjson_lines(http, suite):
    """y_, n_ and i_ files shuffled together, one per line, in NDJSON bodies
    of at most 100 bad lines each (so every error is listed): every valid
    line is stored once and in order, byte for byte, around the bad ones;
    each bad line is reported with its own line number and a reason."""
    # Only files whose value holds no newline byte can be one NDJSON line: a
    # newline would end the line inside the value (y_ files spread over lines,
    # n_/i_ ones with raw newlines in strings), so those are left out here;
    # (a) and (b) cover them. Blank files (empty, only whitespace) are left
    # out too: NDJSON skips blank lines, which are no records at all.
    files = [(n, strip_ws(d), v) for n, d, v in suite if strip_ws(d) and b"\n" not in strip_ws(d)]
    assert sum(n.startswith("y_") for n, _, _ in files) > 80 and sum(n.startswith("n_") for n, _, _ in files) > 150
    random.Random(7).shuffle(files)
    total = 0
    while files:
        body, good, bad = [], [], []
        while files and len(bad) < MAX_ERRORS_SHOWN:
            name, line, ok = files.pop()
            body.append(line)
            (good if ok else bad).append((len(body), name, line))
        data = b"\n".join(body) + b"\n"
        tail = _tail(http)
        r = http.post("/records", content=data, headers=NDJSON)
        answer = _check_answer(r, len(good), len(bad), "mixed NDJSON")
        assert [(e["line"]) for e in answer["errors"]] == [n for n, _, _ in bad]
        assert [raw for _, raw in _stored(http, tail)] == [line for _, _, line in good]
        total += len(good)
    assert _assert_counts_agree(http) == total
