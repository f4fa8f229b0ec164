"""parse_definition: errors, kinds, the native subset, paths, the dialect."""
from __future__ import annotations

import jmespath
import pytest

from shoal.errors import InvalidArgument, PSFDefinitionError
from shoal.psf import PSFKind, parse_definition


@pytest.mark.parametrize("text,position", [
    ("type ==", 7), ("a.", 2), ("a[", 2), ("'unterminated", 0), ("a[?]", 3), ("", 0),
    ("a &&", 4), ("`abc", 0), ("\"abc", 0), ("a ~ b", 2), ("a[1", 3),
])
def test_parse_errors_carry_position(text, position):
    with pytest.raises(PSFDefinitionError) as exc:
        parse_definition(text)
    assert exc.value.position == position
    assert exc.value.expression == text
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("text", ["nosuch(a)", "length(a, b)", "length()", "not_null()", "merge()"])
def test_function_errors(text):
    with pytest.raises(PSFDefinitionError):
        parse_definition(text)


def test_variadic_functions_ok():
    assert not parse_definition("not_null(a, b, c)").native
    assert not parse_definition("merge(a)").native


def test_non_str_definition():
    with pytest.raises(InvalidArgument):
        parse_definition(3)


@pytest.mark.parametrize("text,kind", [
    ("type", PSFKind.PROJECTION),
    ("type == 'PushEvent'", PSFKind.PREDICATE),
    ("!a", PSFKind.PREDICATE),
    ("a > `1` && b < `2`", PSFKind.PREDICATE),
    ("a == 'x' || !b", PSFKind.PREDICATE),
    ("_path == 'dns' && query", PSFKind.PROJECTION),
    ("user.lang || lang", PSFKind.PROJECTION),
    ("contains(tags, 'x')", PSFKind.PREDICATE),
    ("starts_with(name, 'x')", PSFKind.PREDICATE),
    ("length(tags)", PSFKind.PROJECTION),
    ("a | b == 'x'", PSFKind.PREDICATE),
    ("`true`", PSFKind.PREDICATE),
    ("`3`", PSFKind.PROJECTION),
    ("a[?b == `1`]", PSFKind.PROJECTION),
])
def test_kinds(text, kind):
    assert parse_definition(text).kind is kind


NATIVE = [
    "type", "a.b.c", "\"id.resp_p\"", "[1]", "a[0].b", "a[0][1]", "@", "@.a", "(a.b).c", "a.\"b c\"",
    "type == 'PushEvent'", "'PushEvent' == type", "\"id.resp_p\" > `1000`", "`1000` < \"id.resp_p\"",
    "a == `null`", "a != `true`", "a <= `1.5`", "a >= `\"s\"`", "_path == 'dns' && query",
    "!(proto == 'udp')", "user.lang || lang", "`3`", "'x'", "a || 'default'", "(a == 'x') == `true`",
    "!a", "!!a", "'x' == 'y'", "a[4294967294]",
]
NOT_NATIVE = [
    "a[*].b", "a[-1]", "a[0:2]", "a[]", "a[?b == `1`]", "*", "a.*", "length(a)", "a | b", "a == b",
    "a.[b, c]", "{x: a}", "a == `[1]`", "a == `{}`", "`[1]`", "sort_by(a, &b)", "a[4294967295]", "a == `1e400`",
    "a == `1e308` || a == `" + "9" * 400 + "`", "!a.c",
]


@pytest.mark.parametrize("text", NATIVE)
def test_native_subset(text):
    e = parse_definition(text)
    assert e.native and e.program is not None and e.why_not_native is None, e.why_not_native


@pytest.mark.parametrize("text", NOT_NATIVE)
def test_outside_native_subset(text):
    e = parse_definition(text)
    assert not e.native and e.program is None and e.why_not_native


@pytest.mark.parametrize("text,paths", [
    ("type", [("type",)]),
    ("\"id.resp_p\" > `1000`", [("id.resp_p",)]),
    ("a[0].b || c", [("a", 0, "b"), ("c",)]),
    ("[1]", [(1,)]),
    ("@", [()]),
    ("a[*].b", [("a",)]),
    ("length(tags) > `2` && user.name", [("tags",), ("user", "name")]),
    ("a.[b, c]", [("a", "b"), ("a", "c")]),
    ("a | b", [("a", "b")]),
    ("a[?x == `1`].y", [("a",)]),
    ("`1`", []),
])
def test_paths(text, paths):
    assert list(parse_definition(text).paths) == paths


def test_program_shape():
    e = parse_definition("a.b == 'x' && !c")
    assert e.program == (("SLOT", ("a", "b")), ("LIT", "x"), ("EQ", None), ("SLOT", ("c",)),
                         ("NOT", None), ("AND", None))


@pytest.mark.parametrize("text,obj,want", [
    ("a < 'b'", {"a": 1}, None),
    ("a > `1`", {"a": "x"}, None),
    ("(a < 'b') || 'y'", {"a": 1}, "y"),
    ("a < `2`", {"a": 1}, True),
    ("a < 'b'", {"a": "a"}, True),
    ("a == `1`", {"a": True}, False),
    ("!a", {"a": 0}, False),
])
def test_dialect(text, obj, want):
    assert parse_definition(text).search(obj) == want


def test_dialect_agrees_with_jmespath_where_it_does_not_raise():
    obj = {"a": 1, "b": "x", "c": [1, 2], "d": {"e": None}}
    for text in NATIVE + NOT_NATIVE:
        try:
            want = jmespath.search(text, obj)
        except (TypeError, jmespath.exceptions.JMESPathError):
            continue
        assert parse_definition(text).search(obj) == want, text


def test_package_exports():
    import shoal.psf as psf

    assert psf.__all__ == sorted(psf.__all__)
    for name in psf.__all__:
        assert getattr(psf, name) is not None
