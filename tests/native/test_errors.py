"""The core's status codes and the one table mapping them to exceptions
(shoal/_native/__init__.py): every SHOAL_E_* that shoal.h defines has a row
(read from the header's text, not from the table), and check() raises the
row's class with its reason."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import shoal
from shoal import _native
from shoal._native import check, lib, reason

HEADER = Path(_native.__file__).with_name("shoal.h")
CODES = {name: int(value) for name, value in re.findall(r"#define (SHOAL_E_\w+) (-\d+)", HEADER.read_text())}


def test_the_header_defines_codes():
    assert len(CODES) >= 17 and all(v < 0 for v in CODES.values())
    assert len(set(CODES.values())) == len(CODES), "two SHOAL_E_* share a value"


@pytest.mark.parametrize("name", sorted(CODES))
def test_every_code_has_a_row(name):
    code = CODES[name]
    assert getattr(lib, name) == code
    assert code in _native._ERRORS, f"{name} has no row in shoal/_native/__init__.py's table"
    text, cls = _native._ERRORS[code]
    assert reason(code) == text and text and not text.startswith("error ")
    with pytest.raises(cls) as info:
        check(code, "ingest")
    assert type(info.value) is cls and issubclass(cls, shoal.ShoalError)
    assert text in str(info.value)


def test_parse_errors_and_others():
    with pytest.raises(shoal.ParseError, match="ingest: invalid JSON"):
        check(lib.SHOAL_E_SYNTAX, "ingest")
    with pytest.raises(shoal.StoreClosed, match="^the store is closed$"):
        check(lib.SHOAL_E_CLOSED, "query")
    with pytest.raises(shoal.StorageError, match="error -999"):
        check(-999)
    assert reason(-999) == "error -999"
    assert check(0) == 0 and check(7) == 7
