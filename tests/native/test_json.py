"""json.c: shoal_parse (validation + extraction), shoal_canon, shoal_hash, shoal_crc32c.

The oracle is orjson: shoal_parse must accept exactly what orjson.loads accepts,
and extracted values must be what orjson finds at the same paths.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
from decimal import Decimal

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shoal._native import lib

from .conftest import (
    TYPE_NAMES,
    Trie,
    dump_json,
    dump_string,
    follow,
    json_doc,
    orjson_accepts,
    python_type,
)

OK = lib.SHOAL_OK
DBL_LIMIT = 2**1024 - 2**970  # least value that rounds to infinity


# ---- validation: JSONTestSuite ------------------------------------------------

def test_testsuite_matches_orjson(nj, testsuite_files):
    mismatches = []
    for name, data in testsuite_files.items():
        rc, _, _ = nj.parse(data)
        expected = orjson_accepts(data)
        if (rc == OK) != expected:
            mismatches.append((name, rc, expected))
        if name.startswith("y_"):
            assert rc == OK, name
        if name.startswith("n_"):
            assert rc != OK, name
    assert not mismatches


# Our decisions for the implementation-defined cases (all follow orjson).
I_DECISIONS = {
    "i_number_double_huge_neg_exp.json": OK,               # underflow to 0.0
    "i_number_real_underflow.json": OK,
    "i_number_huge_exp.json": lib.SHOAL_E_NUMBER,          # rounds to infinity
    "i_number_neg_int_huge_exp.json": lib.SHOAL_E_NUMBER,
    "i_number_pos_double_huge_exp.json": lib.SHOAL_E_NUMBER,
    "i_number_real_neg_overflow.json": lib.SHOAL_E_NUMBER,
    "i_number_real_pos_overflow.json": lib.SHOAL_E_NUMBER,
    "i_number_too_big_neg_int.json": OK,                   # big ints become floats
    "i_number_too_big_pos_int.json": OK,
    "i_number_very_big_negative_int.json": OK,
    "i_object_key_lone_2nd_surrogate.json": lib.SHOAL_E_UTF8,
    "i_string_1st_surrogate_but_2nd_missing.json": lib.SHOAL_E_UTF8,
    "i_string_1st_valid_surrogate_2nd_invalid.json": lib.SHOAL_E_UTF8,
    "i_string_incomplete_surrogate_and_escape_valid.json": lib.SHOAL_E_UTF8,
    "i_string_incomplete_surrogate_pair.json": lib.SHOAL_E_UTF8,
    "i_string_incomplete_surrogates_escape_valid.json": lib.SHOAL_E_UTF8,
    "i_string_invalid_lonely_surrogate.json": lib.SHOAL_E_UTF8,
    "i_string_invalid_surrogate.json": lib.SHOAL_E_UTF8,
    "i_string_inverted_surrogates_U+1D11E.json": lib.SHOAL_E_UTF8,
    "i_string_lone_second_surrogate.json": lib.SHOAL_E_UTF8,
    "i_string_UTF-8_invalid_sequence.json": lib.SHOAL_E_UTF8,
    "i_string_UTF8_surrogate_U+D800.json": lib.SHOAL_E_UTF8,
    "i_string_invalid_utf-8.json": lib.SHOAL_E_UTF8,
    "i_string_iso_latin_1.json": lib.SHOAL_E_UTF8,
    "i_string_lone_utf8_continuation_byte.json": lib.SHOAL_E_UTF8,
    "i_string_not_in_unicode_range.json": lib.SHOAL_E_UTF8,
    "i_string_overlong_sequence_2_bytes.json": lib.SHOAL_E_UTF8,
    "i_string_overlong_sequence_6_bytes.json": lib.SHOAL_E_UTF8,
    "i_string_overlong_sequence_6_bytes_null.json": lib.SHOAL_E_UTF8,
    "i_string_truncated-utf-8.json": lib.SHOAL_E_UTF8,
    "i_string_UTF-16LE_with_BOM.json": lib.SHOAL_E_SYNTAX,
    "i_string_utf16BE_no_BOM.json": lib.SHOAL_E_SYNTAX,
    "i_string_utf16LE_no_BOM.json": lib.SHOAL_E_SYNTAX,
    "i_structure_500_nested_arrays.json": OK,
    "i_structure_UTF-8_BOM_empty_object.json": lib.SHOAL_E_SYNTAX,
}


def test_testsuite_implementation_defined_decisions(nj, testsuite_files):
    got = {name: nj.parse(data)[0] for name, data in testsuite_files.items() if name.startswith("i_")}
    assert got == I_DECISIONS


# ---- validation: errors and offsets ------------------------------------------

@pytest.mark.parametrize(
    "text, code, off",
    [
        (b"", lib.SHOAL_E_EMPTY, 0),
        (b" \t\r\n", lib.SHOAL_E_EMPTY, 4),
        (b"\x0c1", lib.SHOAL_E_SYNTAX, 0),      # form feed is not JSON whitespace
        (b"[1] x", lib.SHOAL_E_TRAILING, 4),
        (b"1 2", lib.SHOAL_E_TRAILING, 2),
        (b'"a\x01b"', lib.SHOAL_E_CONTROL, 2),
        (b'{"k\x1f":1}', lib.SHOAL_E_CONTROL, 3),
        (b'"a\tb"', lib.SHOAL_E_CONTROL, 2),
        (b'["\\ud800"]', lib.SHOAL_E_UTF8, 2),
        (b'"\\udc00\\ud800"', lib.SHOAL_E_UTF8, 1),
        (b'"ab\xc0\xaf"', lib.SHOAL_E_UTF8, 3),
        (b'"\xed\xa0\x80"', lib.SHOAL_E_UTF8, 1),
        (b'"\xf4\x90\x80\x80"', lib.SHOAL_E_UTF8, 1),
        (b'"\xe6\x97"', lib.SHOAL_E_UTF8, 1),
        (b'[1e400]', lib.SHOAL_E_NUMBER, 1),
        (b'-1e400', lib.SHOAL_E_NUMBER, 0),
        (b"[1,", lib.SHOAL_E_SYNTAX, 3),
        (b'{"a" 1}', lib.SHOAL_E_SYNTAX, 5),
        (b"[01]", lib.SHOAL_E_SYNTAX, 2),
        (b"[1.]", lib.SHOAL_E_SYNTAX, 3),
        (b"[1.e1]", lib.SHOAL_E_SYNTAX, 3),
        (b"-", lib.SHOAL_E_SYNTAX, 1),
        (b"tru", lib.SHOAL_E_SYNTAX, 0),
        (b'"\\x"', lib.SHOAL_E_SYNTAX, 2),
        (b'"abc', lib.SHOAL_E_SYNTAX, 4),
        (b"\xef\xbb\xbf{}", lib.SHOAL_E_SYNTAX, 0),
    ],
)
def test_error_codes_and_offsets(nj, text, code, off):
    assert nj.parse(text)[:2] == (code, off)
    assert not orjson_accepts(text)


def test_accepts_what_orjson_accepts_at_the_edges(nj):
    for text in [b'"\\u0000"', b'"\x7f"', b'"\\ud83d\\ude00"', b'"\xf4\x8f\xbf\xbf"', b'"\xef\xbf\xbf"',
                 b"-0", b"0e0", b"1E+2", b"1e-400", b" null ", b"\r\n[]\t", b'{"a":1,"a":2}', b'""']:
        assert nj.parse(text)[0] == OK, text
        assert orjson_accepts(text)


def test_depth_limit(nj):
    limit = lib.SHOAL_MAX_DEPTH
    for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
        ok = opener * limit + b"1" + closer * limit
        assert nj.parse(ok)[0] == OK and orjson_accepts(ok)
        deep = opener * (limit + 1) + b"1" + closer * (limit + 1)
        rc, off, _ = nj.parse(deep)
        assert rc == lib.SHOAL_E_DEPTH and off == limit * len(opener)
        assert not orjson_accepts(deep)
    assert nj.parse(b"[" * 100000)[0] == lib.SHOAL_E_DEPTH
    assert nj.parse(b"[{\"a\":" * 50000)[0] == lib.SHOAL_E_DEPTH


# ---- validation: numbers --------------------------------------------------------

def _limit_neighbours():
    s = str(DBL_LIMIT)
    yield s
    yield str(DBL_LIMIT - 1)
    yield str(DBL_LIMIT + 1)
    yield s[0] + "." + s[1:] + "e308"
    yield s[0] + "." + s[1:] + "0000e308"
    yield s[0] + "." + s[1:] + "0001e308"
    yield "0.000" + s + "e312"
    yield "-" + s[:20] + "e289"
    yield s[:17] + "e292"
    yield "1797693134862315708145274237317043567981e269"  # DBL_MAX exactly
    yield "0.1e310"
    yield "0.01e310"
    yield "10e308"
    yield "1" + "0" * 308
    yield "1" + "0" * 309
    yield "0e999999999999999999999"
    yield "0.0000e-99999999999999999"
    yield "1e-99999999999999999999"
    yield "123.456e-789"


number_texts = st.builds(
    lambda neg, intpart, frac, exp: neg + intpart + frac + exp,
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,30}", fullmatch=True),
              st.integers(1, 400).map(lambda n: "9" * n)),
    st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,30}", fullmatch=True),
              st.integers(1, 400).map(lambda n: "." + "0" * n + "1")),
    st.one_of(st.just(""), st.builds(lambda e, sign, v: e + sign + str(v), st.sampled_from("eE"),
                                     st.sampled_from(["", "+", "-"]), st.integers(0, 700))),
)


@given(number_texts)
@settings(max_examples=600)
def test_numbers_follow_double_range(nj, text):
    data = text.encode()
    rc = nj.parse(data)[0]
    finite = abs(float(text)) != float("inf")
    assert (rc == OK) == finite == orjson_accepts(data), text
    if not finite:
        assert rc == lib.SHOAL_E_NUMBER


def test_numbers_at_the_double_limit(nj):
    for text in _limit_neighbours():
        data = text.encode()
        finite = abs(float(text)) != float("inf")
        assert (nj.parse(data)[0] == OK) == finite == orjson_accepts(data), text


# ---- validation: differential fuzzing against orjson ---------------------------

INTERESTING = [b'"', b"\\", b"{", b"}", b"[", b"]", b",", b":", b"0", b"-", b".", b"e", b"+", b" ",
               b"\x00", b"\x1f", b"\x7f", b"\x80", b"\xbf", b"\xc0", b"\xc2", b"\xe0", b"\xed",
               b"\xef", b"\xf0", b"\xf4", b"\xf5", b"\xff", b"t", b"n", b"\\u", b"\\ud800",
               b"\\udc00", b"\\uD83D\\uDE00", b"\xed\xa0\x80", b"\xf0\x9f\x98\x80", b"1e999", b"\t", b"\n"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        pos = rng.randint(0, len(buf))
        op = rng.random()
        if op < 0.35 and buf:
            del buf[min(pos, len(buf) - 1)]
        elif op < 0.7:
            buf[pos:pos] = rng.choice(INTERESTING)
        elif buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
    return bytes(buf)


def _check_same_verdict(nj, data: bytes):
    rc, off, _ = nj.parse(data)
    assert (rc == OK) == orjson_accepts(data), (data, rc, off)
    assert 0 <= off <= len(data)


@given(json_doc, st.randoms(use_true_random=False))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_generated_documents_parse(nj, doc, rng):
    data = dump_json(doc, rng).encode()
    assert nj.parse(data)[0] == OK, data
    for _ in range(5):
        _check_same_verdict(nj, mutate(data, rng))


@given(st.binary(max_size=40))
@settings(max_examples=1500)
def test_random_bytes_in_strings_and_values(nj, blob):
    for data in (b'["' + blob + b'"]', b'{"' + blob + b'":1}', blob, b"[" + blob + b"]"):
        _check_same_verdict(nj, data)


# The record sets of each source: shoal.sample's kinds, or the real data sets
# (the real-data tier: skipped when they are absent).
CORPUS = {"generated": ("zeek_logs", "statuses", "github_events", "jenkins_jobs"),
          "real": ("zeek_wrccdc2018", "twitter_statuses", "twitter_timeline", "github_events",
                   "gsoc2018_projects", "apache_builds_jobs", "update_center_plugins", "amazon_cellphones")}


@pytest.fixture(params=list(CORPUS))
def corpus(request, generated, real_data):
    """corpus(n, names=all of the source's) -> {name: its first n records}."""
    def load(n: int, names=None) -> dict[str, tuple[bytes, ...]]:
        load_one = generated if request.param == "generated" else real_data
        return {name: load_one(name, n) for name in (names or CORPUS[request.param])}
    load.source = request.param
    return load


def test_mutated_records(nj, corpus):
    rng = random.Random(1234)
    names = None if corpus.source == "generated" else (
        "zeek_wrccdc2018", "twitter_statuses", "github_events", "amazon_cellphones")
    lines = [line for some in corpus(300, names).values() for line in some]
    for _ in range(6000):
        _check_same_verdict(nj, mutate(rng.choice(lines), rng))


def test_plain_string_runs_every_position(nj):
    """Special bytes at many offsets of strings up to 260 bytes, so each
    SSE2/AVX2/word/tail boundary of the string scanner sees each kind of stop."""
    for n in [*range(0, 80), 100, 150, 260]:
        for special in (b"", b"\\n", b"\x01", b"\xc3\xa9", b"\xc3", b"\\ud800", b'"'):
            for pos in range(0, n + 1, max(1, n // 13) if n < 80 else 1):
                body = b"a" * pos + special + b"b" * (n - pos)
                for data in (b'"' + body + b'"', b'{"' + body + b'":"' + body + b'"}'):
                    _check_same_verdict(nj, data)


def test_every_line_is_accepted(nj, corpus):
    for name, lines in corpus(20000 if corpus.source == "real" else 3000).items():
        for line in lines:
            assert nj.parse(line)[0] == OK, (name, line[:80])


# ---- extraction ------------------------------------------------------------------

def check_slots(nj, data: bytes, paths):
    trie = Trie(paths)
    rc, _, slots = nj.parse(data, trie)
    assert rc == OK
    doc = orjson.loads(data)
    for path in paths:
        start, length, type_, flags = slots[trie.slot_of[tuple(path)]]
        want = follow(doc, path)
        assert TYPE_NAMES[type_] == TYPE_NAMES[python_type(want)], (data, path)
        if want is nj.MISSING:
            continue
        text = data[start : start + length]
        assert orjson.loads(text) == want, (data, path, text)
        assert bool(flags & lib.SHOAL_VF_EMPTY) == (want in ("", [], {}) and not isinstance(want, bool))
        assert bool(flags & lib.SHOAL_VF_ESCAPED) == (type_ == lib.SHOAL_T_STRING and b"\\" in text)


def all_paths(doc, prefix=(), limit=4):
    yield prefix
    if len(prefix) >= limit:
        return
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from all_paths(v, prefix + (k,), limit)
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from all_paths(v, prefix + (i,), limit)


@given(json_doc, st.randoms(use_true_random=False), st.data())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_extraction_matches_orjson(nj, doc, rng, data):
    text = dump_json(doc, rng).encode()
    present = sorted(set(all_paths(orjson.loads(text))), key=repr)
    absent = [("nope",), (0, "a"), ("a", 7), (3,), ("", "")]
    pool = present + absent
    paths = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8, unique=True))
    check_slots(nj, text, paths)


def test_extraction_basics(nj):
    data = b'{"a": {"b": [10, "x\\n", {"c": true}]}, "e": [], "f": "", "g": {}, "h": null, "i": false}'
    paths = [("a",), ("a", "b"), ("a", "b", 0), ("a", "b", 1), ("a", "b", 2, "c"), ("a", "b", 5),
             ("e",), ("f",), ("g",), ("h",), ("i",), ("zz",), ("a", "b", "c"), ("e", 0), ()]
    check_slots(nj, data, paths)
    trie = Trie(paths)
    _, _, slots = nj.parse(data, trie)
    assert slots[trie.slot_of[("a", "b", 1)]] == (17, 5, lib.SHOAL_T_STRING, lib.SHOAL_VF_ESCAPED)
    assert slots[trie.slot_of[("f",)]][2:] == (lib.SHOAL_T_STRING, lib.SHOAL_VF_EMPTY)
    assert slots[trie.slot_of[()]] == (0, len(data), lib.SHOAL_T_OBJECT, 0)


def test_duplicate_keys_last_wins(nj):
    paths = [("a",), ("a", "b"), ("a", "c")]
    for data in (b'{"a": {"b": 1, "c": 2}, "a": {"b": 3}}', b'{"a": {"b": 1}, "a": 5}',
                 b'{"a": {"b": 1}, "\\u0061": {"c": 9}}', b'{"a": {"b": 1, "b": {"x": 1}}}'):
        check_slots(nj, data, paths)


def test_escaped_keys_match_unescaped_trie_keys(nj):
    long_key = "k" * 300 + "é"
    escaped_long = "".join(f"\\u{ord(c):04x}" for c in long_key)
    data = ('{"\\u0061\\/b": 1, "\\ud83d\\ude00": 2, "é": 3, "' + escaped_long + '": 4, "q\\"": 5}').encode()
    check_slots(nj, data, [("a/b",), ("😀",), ("é",), (long_key,), ('q"',), ("a",), (long_key[:-1],)])


def test_key_edges_only_in_objects_and_index_edges_only_in_arrays(nj):
    check_slots(nj, b'{"0": 1}', [(0,), ("0",)])
    check_slots(nj, b'[5, 6]', [(1,), ("1",)])


def test_many_edges(nj):
    keys = [f"key{i}" for i in range(40)] + ["k", "", "key1x"]
    data = orjson.dumps({k: i for i, k in enumerate(keys)})
    check_slots(nj, data, [(k,) for k in keys] + [("absent",)])


def test_records_extraction(nj, corpus):
    zeek = [("_path",), ("id.resp_h",), ("id.resp_p",), ("query",), ("answers", 0)]
    statuses = [("lang",), ("user", "screen_name"), ("entities", "hashtags", 0, "text"), ("id",),
                ("metadata", "result_type"), ("retweeted_status", "user", "id")]
    github = [("type",), ("repo", "name"), ("actor", "login"), ("payload",), ("payload", "commits", 1, "message")]
    cases = {"generated": {"zeek_logs": zeek, "statuses": statuses, "github_events": github,
                           "jenkins_jobs": [("name",), ("color",), ("url",)]},
             "real": {"zeek_wrccdc2018": zeek, "twitter_statuses": statuses, "github_events": github,
                      "amazon_cellphones": [(1,), (7,), (8, 0)]}}[corpus.source]
    for name, lines in corpus(2000 if corpus.source == "real" else 1000, list(cases)).items():
        for line in lines:
            check_slots(nj, line, cases[name])


def test_slots_reset_before_parse(nj):
    trie = Trie([("a",), ("b",)])
    nj.parse(b'{"a":1,"b":2}', trie)
    assert nj.parse(b'{"c":3}', trie)[2] == [(0, 0, 0, 0), (0, 0, 0, 0)]


# ---- canonical values ----------------------------------------------------------

def canon_number_oracle(text: str) -> bytes:
    sign, digits, exp = Decimal(text).as_tuple()
    digits = list(digits)
    while len(digits) > 1 and digits[0] == 0:
        digits.pop(0)
    if digits == [0]:
        return b"n0"
    while digits[-1] == 0:
        digits.pop()
        exp += 1
    return ("n" + ("-" if sign else "") + "".join(map(str, digits)) + "e" + str(exp)).encode()


@pytest.mark.parametrize(
    "text, canon",
    [("1", b"n1e0"), ("1.0", b"n1e0"), ("10e-1", b"n1e0"), ("0.1e1", b"n1e0"), ("10", b"n1e1"),
     ("-0.15", b"n-15e-2"), ("1.5E3", b"n15e2"), ("0", b"n0"), ("-0", b"n0"), ("0.0", b"n0"),
     ("0e5", b"n0"), ("-0.000e-7", b"n0"), ("100.0100", b"n10001e-2"), ("120e+2", b"n12e3"),
     ("1e-400", b"n1e-400"), ("123456789012345678901234567890", b"n12345678901234567890123456789e1")],
)
def test_canon_number_examples(nj, text, canon):
    assert nj.canon(text.encode(), lib.SHOAL_T_NUMBER) == canon
    assert canon_number_oracle(text) == canon


@given(number_texts)
@example("1e999999999999999999999999")
@example("-0.0000001e-999999999999999999")
def test_canon_number_matches_decimal(nj, text):
    got = nj.canon(text.encode(), lib.SHOAL_T_NUMBER)
    if "e" in text.lower() and abs(int(text.lower().split("e")[1])) > 10**14:
        assert got.startswith(b"n")  # clamped exponent; only sanity here
        return
    assert got == canon_number_oracle(text)


@given(st.text(max_size=40), st.randoms(use_true_random=False))
@settings(max_examples=500)
def test_canon_string_matches_orjson(nj, s, rng):
    text = dump_string(s, rng).encode()
    assert nj.canon(text, lib.SHOAL_T_STRING) == b"s" + orjson.loads(text).encode("utf-8")


def test_canon_literals_and_errors(nj):
    assert nj.canon(b"true", lib.SHOAL_T_TRUE) == b"t"
    assert nj.canon(b"false", lib.SHOAL_T_FALSE) == b"f"
    assert nj.canon(b"null", lib.SHOAL_T_NULL) == b"z"
    assert nj.canon(b"", lib.SHOAL_T_MISSING) == lib.SHOAL_E_ARG
    assert nj.canon(b"[]", lib.SHOAL_T_ARRAY) == lib.SHOAL_E_ARG
    assert nj.canon(b"{}", lib.SHOAL_T_OBJECT) == lib.SHOAL_E_ARG
    assert nj.canon(b'"\\ud800"', lib.SHOAL_T_STRING) == lib.SHOAL_E_ARG
    assert nj.canon(b"1x", lib.SHOAL_T_NUMBER) == lib.SHOAL_E_ARG
    assert nj.canon(b'""', lib.SHOAL_T_STRING) == b"s"


def test_canon_space(nj):
    assert nj.canon(b'"abc"', lib.SHOAL_T_STRING, cap=4) == b"sabc"
    assert nj.canon(b'"abc"', lib.SHOAL_T_STRING, cap=3) == lib.SHOAL_E_SPACE
    assert nj.canon(b'"\\u00e9"', lib.SHOAL_T_STRING, cap=3) == "sé".encode()
    assert nj.canon(b'"\\u00e9"', lib.SHOAL_T_STRING, cap=2) == lib.SHOAL_E_SPACE
    assert nj.canon(b"-1.5e3", lib.SHOAL_T_NUMBER, cap=6) == b"n-15e2"
    assert nj.canon(b"-1.5e3", lib.SHOAL_T_NUMBER, cap=5) == lib.SHOAL_E_SPACE
    assert nj.canon(b"0", lib.SHOAL_T_NUMBER, cap=1) == lib.SHOAL_E_SPACE
    assert nj.canon(b"true", lib.SHOAL_T_TRUE, cap=0) == lib.SHOAL_E_SPACE


def test_canon_of_extracted_values(nj, corpus):
    trie = Trie([("text",), ("id",), ("user", "name"), ("retweet_count",)])
    name = "statuses" if corpus.source == "generated" else "twitter_statuses"
    for line in corpus(500, [name])[name]:
        _, _, slots = nj.parse(line, trie)
        for start, length, type_, _ in slots:
            if type_ == lib.SHOAL_T_STRING:
                text = line[start : start + length]
                assert nj.canon(text, type_) == b"s" + orjson.loads(text).encode()
            elif type_ == lib.SHOAL_T_NUMBER:
                text = line[start : start + length].decode()
                assert nj.canon(text.encode(), type_) == canon_number_oracle(text)


# ---- hash ------------------------------------------------------------------------

def test_hash_is_stable(nj):
    # Stored in logs and index dumps: these values must never change.
    assert nj.hash(0, b"") == PINNED[0]
    assert nj.hash(1, b"sdns") == PINNED[1]
    assert nj.hash(7, b"n15e2") == PINNED[2]
    assert nj.hash(3, b"s" + b"x" * 100) == PINNED[3]


PINNED = [0x1525F7DD3FA4A178, 0xCA3289D117E557D3, 0x3B57A592F9A914CD, 0xCC8B6FCADCF6160B]

_M64 = (1 << 64) - 1


def _hash_oracle(psf_id: int, canon: bytes) -> int:
    """shoal_hash as specified in canon.c, word by word in Python."""
    m1, m2, m3 = 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B, 0xA54FF53A5F1D36F1

    def mix(h):
        h ^= h >> 32
        h = h * m2 & _M64
        h ^= h >> 29
        h = h * m3 & _M64
        return h ^ (h >> 32)

    n = len(canon)
    h = mix(((psf_id << 32) | (n & 0xFFFFFFFF)) ^ (n >> 32) ^ m1)
    for i in range(0, n, 8):
        h = (h ^ int.from_bytes(canon[i : i + 8].ljust(8, b"\0"), "little")) * m1 & _M64
        h ^= h >> 29
    return mix(h)


def test_hash_matches_its_specification_at_every_tail_length(nj):
    rng = random.Random(11)
    blob = bytes(rng.randrange(256) for _ in range(200))
    for n in range(0, 70):
        for off in (0, 3):
            value = blob[off : off + n]
            assert nj.hash(n % 4, value) == _hash_oracle(n % 4, value), (n, off)
    assert [_hash_oracle(0, b""), _hash_oracle(1, b"sdns")] == PINNED[:2]


def _hash_inputs():
    rng = random.Random(7)
    inputs = set()
    for i in range(20000):
        inputs.add((0, b"n%de0" % i))
        inputs.add((i % 5, b"s" + bytes(rng.randrange(256) for _ in range(rng.randint(0, 24)))))
    for n in range(40):
        inputs.add((0, b"\0" * n))
    return sorted(inputs)


def test_hash_collisions_and_bit_balance(nj):
    inputs = _hash_inputs()
    hashes = [nj.hash(psf, value) for psf, value in inputs]
    assert len(set(hashes)) == len(hashes)
    assert len({h >> 16 for h in hashes}) == len(hashes)  # the index's bucket + tag bits
    n = len(hashes)
    for bit in range(64):
        ones = sum((h >> bit) & 1 for h in hashes)
        assert abs(ones / n - 0.5) < 0.02, bit


def test_hash_avalanche(nj):
    rng = random.Random(11)
    flips = [0] * 64
    trials = 0
    for _ in range(300):
        value = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        base = nj.hash(5, value)
        for _ in range(4):
            bit = rng.randrange(len(value) * 8)
            mutated = bytearray(value)
            mutated[bit // 8] ^= 1 << (bit % 8)
            diff = base ^ nj.hash(5, bytes(mutated))
            trials += 1
            for i in range(64):
                flips[i] += (diff >> i) & 1
    for i in range(64):
        assert 0.4 < flips[i] / trials < 0.6, i
    assert nj.hash(1, b"same") != nj.hash(2, b"same")


# ---- CRC32C ----------------------------------------------------------------------

def crc32c_oracle(data: bytes, crc: int = 0) -> int:
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_value(nj):
    assert nj.crc32c(b"123456789") == 0xE3069283
    assert nj.crc32c(b"") == 0
    assert nj.crc32c(b"\0" * 32) == 0x8A9136AA


def test_crc32c_matches_bitwise_oracle(nj):
    from shoal._native import ffi

    rng = random.Random(3)
    blob = bytes(rng.randrange(256) for _ in range(600))
    buf = ffi.from_buffer(blob)
    for off in range(9):
        for n in list(range(0, 70)) + [95, 96, 97, 127, 128, 129, 255, 511]:
            assert lib.shoal_crc32c(0, buf + off, n) == crc32c_oracle(blob[off : off + n]), (off, n)


def test_crc32c_lanes_match_bitwise_oracle(nj):
    """Buffers long enough for interleaved lanes: every lane length, the
    longest lanes and more than one pass of them."""
    from shoal._native import ffi

    rng = random.Random(4)
    blob = bytes(rng.randrange(256) for _ in range(30_000))
    buf = ffi.from_buffer(blob)
    sizes = [767, 768, 769, 1003, 1100, 2047, 4096 + 5, 3 * 4096 - 1, 3 * 4096, 3 * 4096 + 200, 29_993]
    sizes += rng.sample(range(96, 3000), 40)
    for n in sizes:
        off = rng.randrange(8)
        assert lib.shoal_crc32c(0, buf + off, n) == crc32c_oracle(blob[off : off + n]), (off, n)


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32c_chains(nj, a, b):
    assert nj.crc32c(b, nj.crc32c(a)) == nj.crc32c(a + b) == crc32c_oracle(a + b)


def test_crc32c_part_and_join_equal_one_pass(nj):
    """A record's CRC in two steps (the text's share computed when it was
    parsed, joined to the head's CRC at commit) equals reading it in one
    pass, for every length up to the join's reach, and past it part says no."""
    from shoal._native import ffi

    rng = random.Random(5)
    blob = bytes(rng.randrange(256) for _ in range(9000))
    buf = ffi.from_buffer(blob)
    part = ffi.new("uint32_t *")
    sizes = list(range(0, 80)) + [95, 96, 97, 1000, 1003, 4096, 8191, 8192, 8199] + rng.sample(range(100, 8190), 40)
    for n in sizes:
        off = rng.randrange(8)
        crc = rng.randrange(1 << 32)
        if not lib.shoal_crc32c_part(buf + off, n, part):
            pytest.skip("no hardware CRC32C here: the join is not used")
        assert lib.shoal_crc32c_join(crc, buf + off, n, part[0]) == lib.shoal_crc32c(crc, buf + off, n), n
        assert lib.shoal_crc32c(0, buf + off, n) == crc32c_oracle(blob[off: off + n])
    assert lib.shoal_crc32c_part(buf, 8200, part) == 0  # past 8 KiB of words: read the text instead


# ---- line breaks (RecordBatch.ndjson) ---------------------------------------------

def test_count_line_breaks_matches_bytes_count():
    """Lengths around the vector widths and the points where lane counters
    are summed (127 x 16 and 255 x 32 bytes), dense and sparse breaks, and
    bytes that differ from \n and \r in one bit."""
    rng = random.Random(7)
    alphabet = b"\n\r\x0a\x0b\x0c\x0e\x8a\x8d ab{}\""
    sizes = [0, 1, 15, 16, 17, 31, 32, 33, 2031, 2032, 2033, 8159, 8160, 8161, 100_000]
    for n in sizes:
        for density in (0.0, 0.01, 1.0):
            blob = bytes(rng.choice(alphabet) if rng.random() < density else rng.choice(b"xyz\x8a")
                         for _ in range(n))
            for off in (0, 3):
                part = blob[off:]
                want = part.count(b"\n") + part.count(b"\r")
                assert lib.shoal_count_line_breaks(part, len(part)) == want, (n, density, off)
    everything = b"\n" * 70_000 + b"\r" * 70_000
    assert lib.shoal_count_line_breaks(everything, len(everything)) == 140_000


# ---- the portable code path ------------------------------------------------------

@pytest.mark.skipif(os.environ.get("SHOAL_NATIVE_PORTABLE") == "1", reason="already portable")
def test_portable_code_path():
    """Re-runs the byte-level tests with SIMD and SSE4.2 switched off."""
    here = os.path.dirname(__file__)
    env = dict(os.environ, SHOAL_NATIVE_PORTABLE="1")
    keywords = ("testsuite or error_codes or string_runs or mutated or random_bytes or crc32c or extraction"
                " or framing or line_breaks")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k", keywords,
         os.path.join(here, "test_json.py"), os.path.join(here, "test_framing.py")],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
