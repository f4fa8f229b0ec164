"""json.c framing: shoal_frame_ndjson and shoal_frame_array.

The key property: the records found do not depend on where the input is cut
into chunks, when the caller follows the carry-over protocol (keep the bytes
after *consumed, append the next chunk, call again; call again on OUT_FULL).
"""
from __future__ import annotations

import gzip
import json
import random

import pytest
from conftest import SOURCES
from datadir import real_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shoal._native import lib

from .conftest import dump_json, json_doc

OK = lib.SHOAL_OK
OUT_FULL = lib.SHOAL_OUT_FULL
FRAMING = lib.SHOAL_E_FRAMING


def cut(data: bytes, rng: random.Random, max_chunks: int = 8) -> list[bytes]:
    """data split at random points (empty chunks included)."""
    points = sorted(rng.randint(0, len(data)) for _ in range(rng.randint(0, max_chunks)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


# ---- NDJSON -------------------------------------------------------------------

def frame_ndjson_chunks(nj, chunks, cap):
    """Feeds chunks through the carry-over protocol; returns [(text, line)] and the last status."""
    pending, first_line, found, rc = b"", 1, [], OK
    for i, chunk in enumerate(chunks):
        pending += chunk
        final = i == len(chunks) - 1
        while True:
            rc, spans, consumed = nj.frame_ndjson(pending, final, first_line, cap)
            assert len(spans) <= cap
            assert consumed in (0, len(pending)) or pending[consumed - 1 : consumed] == b"\n"
            found += [(pending[s : s + n], line) for s, n, line, status in spans]
            assert all(status == OK for *_, status in spans)
            first_line += pending[:consumed].count(b"\n")
            pending = pending[consumed:]
            if rc != OUT_FULL:
                break
        assert rc == OK
    assert pending == b""
    return found


ndjson_record = json_doc.map(lambda d: json.dumps(d, ensure_ascii=False).encode())


@given(st.lists(ndjson_record, max_size=12), st.randoms(use_true_random=False), st.integers(1, 4))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_ndjson_independent_of_chunking(nj, records, rng, cap):
    lines, expected = [], []
    for rec in records:
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            lines.append(rng.choice([b"", b" ", b"\t", b"\r", b" \t \r"]))
        expected.append((rec, len(lines) + 1))
        lines.append(rng.choice([b"", b" ", b"\t"]) + rec + rng.choice([b"", b" ", b"\r", b"\t\r"]))
    text = b"\n".join(lines)
    if lines and rng.random() < 0.5:
        text += b"\n"
    assert frame_ndjson_chunks(nj, cut(text, rng), cap) == expected
    assert frame_ndjson_chunks(nj, [text], 1000) == expected


def test_ndjson_basics(nj):
    data = b'{"a":1}\n\n  [2]  \r\n\t\n3'
    rc, spans, consumed = nj.frame_ndjson(data, False, 10, 10)
    assert rc == OK and consumed == len(data) - 1
    assert spans == [(0, 7, 10, OK), (11, 3, 12, OK)]
    rc, spans, consumed = nj.frame_ndjson(data, True, 10, 10)
    assert rc == OK and consumed == len(data) and spans[-1] == (len(data) - 1, 1, 14, OK)
    assert nj.frame_ndjson(b"", True, 1, 4) == (OK, [], 0)
    assert nj.frame_ndjson(b"\n \n", True, 1, 0) == (OK, [], 3)


def test_ndjson_out_full_resume(nj):
    data = b"1\n\n2\n3\n \n"
    rc, spans, consumed = nj.frame_ndjson(data, True, 1, 1)
    assert (rc, spans, consumed) == (OUT_FULL, [(0, 1, 1, OK)], 3)
    rc, spans, consumed = nj.frame_ndjson(data[3:], True, 3, 1)
    assert (rc, spans, consumed) == (OUT_FULL, [(0, 1, 3, OK)], 2)
    rc, spans, consumed = nj.frame_ndjson(data[5:], True, 4, 1)
    assert (rc, spans, consumed) == (OK, [(0, 1, 4, OK)], 4)  # blank tail is consumed, not OUT_FULL
    assert nj.frame_ndjson(b"1\n", True, 1, 0) == (OUT_FULL, [], 0)


@given(st.binary(max_size=60).map(lambda b: b.replace(b"x", b"\n")), st.randoms(use_true_random=False),
       st.integers(1, 3))
def test_ndjson_any_bytes_independent_of_chunking(nj, data, rng, cap):
    assert frame_ndjson_chunks(nj, cut(data, rng), cap) == frame_ndjson_chunks(nj, [data], 1000)


@pytest.mark.parametrize("source", SOURCES)
def test_ndjson_file(nj, records, source):
    lines = records(source, "statuses", 100)
    data = b"\n".join(lines) + b"\n"
    rng = random.Random(5)
    found = frame_ndjson_chunks(nj, cut(data, rng, 40), 7)
    assert found == [(line, i + 1) for i, line in enumerate(lines)]


# ---- arrays -------------------------------------------------------------------

def frame_array_chunks(nj, chunks, cap):
    """Feeds chunks through the carry-over protocol.

    Returns ([(text, element number, status)], final status, absolute err_off, state).
    """
    state = nj.new_array_state()
    pending, base, found, rc, err_abs = b"", 0, [], OK, None
    for i, chunk in enumerate(chunks):
        pending += chunk
        final = i == len(chunks) - 1
        while True:
            rc, spans, consumed, err = nj.frame_array(state, pending, final, cap)
            assert len(spans) <= cap
            found += [(pending[s : s + n], line, status) for s, n, line, status in spans]
            if rc == FRAMING and err_abs is None:
                err_abs = base + err
            base += consumed
            pending = pending[consumed:]
            if rc != OUT_FULL:
                break
        if rc == FRAMING:
            break
    return found, rc, err_abs, state


def _ws(rng):
    return "".join(rng.choice(" \t\r\n") for _ in range(rng.choice([0, 0, 1, 3])))


@given(st.lists(json_doc, max_size=8), st.randoms(use_true_random=False), st.integers(1, 4))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_array_independent_of_chunking(nj, docs, rng, cap):
    texts = [dump_json(d, rng) for d in docs]
    body = ",".join(_ws(rng) + t + _ws(rng) for t in texts) or _ws(rng)
    data = (_ws(rng) + "[" + body + "]" + _ws(rng)).encode()
    expected = [(t.encode(), i + 1, OK) for i, t in enumerate(texts)]
    found, rc, _, state = frame_array_chunks(nj, cut(data, rng), cap)
    assert rc == OK and found == expected
    assert state.phase == 3 and state.elements == len(texts)
    assert state.line == 1 + data.count(b"\n")


@given(st.lists(json_doc, max_size=6), st.randoms(use_true_random=False), st.sampled_from([None, 1, 2, "\t"]))
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_array_pretty_printed(nj, docs, rng, indent):
    data = json.dumps(docs, indent=indent, ensure_ascii=rng.random() < 0.5).encode()
    found, rc, _, _ = frame_array_chunks(nj, cut(data, rng), 3)
    assert rc == OK
    assert [json.loads(text) for text, _, _ in found] == docs
    assert [line for _, line, _ in found] == list(range(1, len(docs) + 1))
    assert all(text.strip() == text and status == OK for text, _, status in found)


ARRAY_ALPHABET = st.sampled_from(list(b'[]{}",\\ \n1ax:') + [0xC3])


@given(st.lists(ARRAY_ALPHABET, max_size=40).map(bytes), st.randoms(use_true_random=False), st.integers(1, 3))
@settings(max_examples=500)
def test_array_any_bytes_independent_of_chunking(nj, data, rng, cap):
    whole = frame_array_chunks(nj, [data], 1000)
    chunked = frame_array_chunks(nj, cut(data, rng), cap)
    assert chunked[:3] == whole[:3]


def test_array_malformed_elements(nj):
    def frame(data: bytes):
        found, rc, err, _ = frame_array_chunks(nj, [data], 100)
        return [(t, n, s) for t, n, s in found], rc, err

    assert frame(b"[]") == ([], OK, None)
    assert frame(b" \n[ \t]\r\n") == ([], OK, None)
    assert frame(b"[1,,2]") == ([(b"1", 1, OK), (b"", 2, lib.SHOAL_E_SYNTAX), (b"2", 3, OK)], OK, None)
    assert frame(b"[1,]") == ([(b"1", 1, OK), (b"", 2, lib.SHOAL_E_SYNTAX)], OK, None)
    assert frame(b"[,]") == ([(b"", 1, lib.SHOAL_E_SYNTAX), (b"", 2, lib.SHOAL_E_SYNTAX)], OK, None)
    assert frame(b"[1 2]") == ([(b"1 2", 1, OK)], OK, None)
    assert frame(b'["a,]\\"", {"b": "}"}, [[1],{}]]') == (
        [(b'"a,]\\""', 1, OK), (b'{"b": "}"}', 2, OK), (b"[[1],{}]", 3, OK)], OK, None)
    assert frame(b"[1, 2") == ([(b"1", 1, OK), (b"2", 2, FRAMING)], FRAMING, 5)
    assert frame(b"[1, ") == ([(b"1", 1, OK)], FRAMING, 4)
    assert frame(b'[1, "abc') == ([(b"1", 1, OK), (b'"abc', 2, FRAMING)], FRAMING, 8)
    assert frame(b"x[1]") == ([], FRAMING, 0)
    assert frame(b"  {}") == ([], FRAMING, 2)
    assert frame(b"") == ([], FRAMING, 0)
    assert frame(b"[1] x") == ([(b"1", 1, OK)], FRAMING, 4)
    assert frame(b"[1]]") == ([(b"1", 1, OK)], FRAMING, 3)


def test_array_failed_state_stays_failed(nj):
    state = nj.new_array_state()
    rc, _, _, err = nj.frame_array(state, b"nope", False, 4)
    assert rc == FRAMING and err == 0 and state.phase == 4
    rc, spans, consumed, _ = nj.frame_array(state, b"[1]", True, 4)
    assert rc == FRAMING and spans == [] and consumed == 3


def test_array_out_full_resume(nj):
    state = nj.new_array_state()
    data = b"[10, 20, 30]"
    rc, spans, consumed, _ = nj.frame_array(state, data, True, 1)
    assert (rc, spans, consumed) == (OUT_FULL, [(1, 2, 1, OK)], 4)
    rc, spans, consumed, _ = nj.frame_array(state, data[4:], True, 1)
    assert (rc, spans, consumed) == (OUT_FULL, [(1, 2, 2, OK)], 4)
    rc, spans, consumed, _ = nj.frame_array(state, data[8:], True, 1)
    assert (rc, spans, consumed) == (OK, [(1, 2, 3, OK)], 4)
    assert state.phase == 3


def test_array_incomplete_element_waits(nj):
    state = nj.new_array_state()
    rc, spans, consumed, _ = nj.frame_array(state, b'[{"a": [1, 2', False, 4)
    assert (rc, spans, consumed) == (OK, [], 1)
    rc, spans, consumed, _ = nj.frame_array(state, b'{"a": [1, 2]}, 12', False, 4)
    assert (rc, spans, consumed) == (OK, [(0, 13, 1, OK)], 14)
    rc, spans, consumed, _ = nj.frame_array(state, b" 12", True, 4)
    assert rc == FRAMING and spans == [(1, 2, 2, FRAMING)]


@pytest.mark.parametrize("source", SOURCES)
def test_array_document(nj, generated, source):
    if source == "real":  # the GitHub API's answer, pretty-printed
        data = gzip.decompress(real_path("simdjson", "github_events.json.gz").read_bytes())
    else:
        events = [json.loads(line) for line in generated("github_events", 30)]
        data = json.dumps(events, indent=2, ensure_ascii=False).encode()
    found, rc, _, _ = frame_array_chunks(nj, cut(data, random.Random(9), 30), 4)
    assert rc == OK
    assert [json.loads(t) for t, _, _ in found] == json.loads(data)
    for text, _, _ in found:
        assert nj.parse(text)[0] == OK
