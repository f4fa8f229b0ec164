"""The one exponent parser (internal.h, shoal_scan_exponent) as its two
callers see it: shoal_parse (json.c), which validates a number and rejects
one that rounds to infinity, and shoal_canon (canon.c), whose canonical
bytes are stored and hashed and so must never change. Each case pins both
results, grammar errors with the offset shoal_parse reports, and where each
caller stops accumulating digits (json.c past 10^9, canon.c past 10^15)."""
from __future__ import annotations

import pytest

from shoal._native import lib

OK, SYNTAX, TRAILING, NUMBER, ARG = (lib.SHOAL_OK, lib.SHOAL_E_SYNTAX, lib.SHOAL_E_TRAILING,
                                     lib.SHOAL_E_NUMBER, lib.SHOAL_E_ARG)

# text, (shoal_parse status, its error offset), canonical bytes or status
CASES = [
    (b"1e0", (OK, 0), b"n1e0"),
    (b"1E+0", (OK, 0), b"n1e0"),
    (b"1e-0", (OK, 0), b"n1e0"),
    (b"1e5", (OK, 0), b"n1e5"),
    (b"1e-5", (OK, 0), b"n1e-5"),
    (b"12.50e2", (OK, 0), b"n125e1"),
    (b"-0.001E-3", (OK, 0), b"n-1e-6"),
    (b"1e00012", (OK, 0), b"n1e12"),
    (b"1e-00000000000000000000001", (OK, 0), b"n1e-1"),
    (b"0e99999999999999999999", (OK, 0), b"n0"),
    # double range: json.c rejects what rounds to infinity, canon.c does not judge
    (b"1e308", (OK, 0), b"n1e308"),
    (b"1e309", (NUMBER, 0), b"n1e309"),
    (b"1e-400", (OK, 0), b"n1e-400"),
    # the clamps: json.c stops at 10^9 (still out of range), canon.c at 10^15
    (b"1e999999999", (NUMBER, 0), b"n1e999999999"),
    (b"1e-10000000000", (OK, 0), b"n1e-10000000000"),
    (b"1e999999999999999", (NUMBER, 0), b"n1e999999999999999"),
    (b"1e-1000000000000000", (OK, 0), b"n1e-1000000000000000"),
    (b"1e-99999999999999999999", (OK, 0), b"n1e-1000000000000000"),
    (b"1e99999999999999999999", (NUMBER, 0), b"n1e1000000000000000"),
    # grammar: the offset is where a digit was expected
    (b"1e", (SYNTAX, 2), ARG),
    (b"1E", (SYNTAX, 2), ARG),
    (b"1e+", (SYNTAX, 3), ARG),
    (b"-1e-", (SYNTAX, 4), ARG),
    (b"1e+-1", (SYNTAX, 3), ARG),
    (b"1ex", (SYNTAX, 2), ARG),
    (b"1e1.5", (TRAILING, 3), ARG),
]


@pytest.mark.parametrize("text, parsed, canon", CASES, ids=[c[0].decode() for c in CASES])
def test_both_callers(nj, text, parsed, canon):
    rc, err_off, _ = nj.parse(text)
    assert (rc, err_off if rc != OK else 0) == parsed
    assert nj.canon(text, lib.SHOAL_T_NUMBER) == canon
