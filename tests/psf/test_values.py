"""Canonical values, hashes, decoding and query values."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from .psf_oracles import canon_decimal, canon_ref

from shoal.errors import InvalidArgument
from shoal.psf import canonical, canonical_json, canonical_scalar, decode, parse_query_value, value_hash


def test_json_semantics():
    assert canonical(json.loads('"\\u0050ush"')) == canonical("Push") == b"sPush"
    assert canonical(1) == canonical(1.0) == b"n1e0"
    assert canonical(True) == b"t" and canonical(1) != canonical(True)
    assert canonical(0) == canonical(0.0) == canonical(-0.0) == b"n0"
    assert canonical(10) == canonical(10.0) == b"n1e1"
    assert canonical(0.1) == b"n1e-1"
    assert canonical(-1234.5) == b"n-12345e-1"
    assert canonical(2**64 + 1) == b"n18446744073709551617e0"
    assert canonical(10**30) == b"n1e30"
    assert canonical(-(2**63)) == canon_decimal(str(-(2**63)))
    assert canonical("") == b"s"
    assert canonical("é🐟") == "sé🐟".encode()


@pytest.mark.parametrize("value", [None, False, [], {}, [1], {"a": 1}, (1,), float("nan"), float("inf"),
                                   -float("inf"), "\ud800", object(), b"bytes"])
def test_not_indexable(value):
    assert canonical(value) is None


def test_scalars_for_literals():
    assert canonical_scalar(False) == b"f" and canonical_scalar(None) == b"z"
    assert canonical_scalar(True) == b"t" and canonical_scalar([1]) is None


def test_numpy_values():
    assert canonical(np.int64(7)) == b"n7e0"
    assert canonical(np.float64(7.5)) == b"n75e-1"
    assert canonical(np.bool_(True)) == b"t"
    assert canonical(np.bool_(False)) is None


@given(st.one_of(st.text(st.characters(blacklist_categories=("Cs",))), st.integers(),
                 st.floats(allow_nan=False, allow_infinity=False), st.just(True)))
def test_canonical_matches_oracle_and_decodes_back(value):
    c = canonical(value)
    assert c == canon_ref(value)
    back = decode(c)
    assert canonical(back) == c
    if isinstance(value, (str, bool)):
        assert back == value and type(back) is type(value)
    elif isinstance(value, int):
        assert back == value and isinstance(back, int)
    else:  # integral floats decode as the int their shortest decimal spells
        assert float(back) == value


def test_decode():
    assert decode(b"n0") == 0
    assert decode(b"n15e-1") == 1.5 and isinstance(decode(b"n15e-1"), float)
    assert decode(b"n1e3") == 1000 and isinstance(decode(b"n1e3"), int)
    assert decode(b"n-25e0") == -25
    assert decode(b"t") is True and decode(b"f") is False and decode(b"z") is None
    assert decode(b"s") == ""
    for bad in [b"", b"x", b"nabc", b"n1ez", b"s\xff"]:
        with pytest.raises(InvalidArgument):
            decode(bad)


def test_canonical_json_is_exact():
    assert canonical_json("1.0") == b"n1e0"
    assert canonical_json(' "\\u0050ush" ') == b"sPush"
    big = "1" * 40 + ".25"
    assert canonical_json(big) == canon_decimal(big)
    assert canonical_json("true") == b"t"
    for text in ["false", "null", "[1]", "{}", "", "nope", '"unterminated', "1e400"]:
        assert canonical_json(text) is None


def test_value_hash():
    h = value_hash(3, b"sPush")
    assert h == value_hash(3, b"sPush") and 0 <= h < 2**64
    assert h != value_hash(4, b"sPush") and h != value_hash(3, b"sPusH")


@pytest.mark.parametrize("text,want", [
    ("PushEvent", "PushEvent"), ('"PushEvent"', "PushEvent"), ("3", 3), ("1.5", 1.5), ("true", True),
    ("null", None), ("[1]", [1]), ("NaN", "NaN"), ("Infinity", "Infinity"), ("", ""), ("hello world", "hello world"),
    ('"\\u0050ush"', "Push"), ("12345678901234567890123", 12345678901234567890123), (" 7 ", 7),
])
def test_parse_query_value(text, want):
    got = parse_query_value(text)
    assert got == want and type(got) is type(want)
    if isinstance(want, float):
        assert math.isfinite(got)
