"""Python evaluation of non-native expressions and callables."""
from __future__ import annotations

import logging

import orjson
import pytest
from .psf_oracles import canon_ref

from shoal.psf import Registry, SlowEvaluator, evaluate, parse_definition


@pytest.fixture
def reg():
    return Registry(None)


def test_callable_with_fields(reg):
    big = reg.register("big", lambda size: size is not None and size > 3, fields=["payload.size"], address=64)
    assert evaluate(big, {"payload": {"size": 5}}) is True
    assert evaluate(big, {"payload": {}}) is False
    two = reg.register("two", lambda a, b: f"{a}-{b}", fields=["a", "b[0]"], address=64)
    assert evaluate(two, {"a": 1, "b": ["x"]}) == "1-x"


def test_callable_without_fields_gets_the_record(reg):
    whole = reg.register("whole", lambda rec: len(rec), address=64)
    assert evaluate(whole, {"a": 1, "b": 2}) == 2


def test_expressions(reg):
    p = reg.register("n", "length(tags)", address=64)
    assert evaluate(p, {"tags": [1, 2, 3]}) == 3
    assert evaluate(parse_definition("a[*].b"), {"a": [{"b": 1}, {"b": 2}]}) == [1, 2]


def test_values_keeps_indexable_results(reg):
    psfs = [
        reg.register("len", "length(tags)", address=64),
        reg.register("first", "tags[0]", address=64),
        reg.register("all", "tags", address=64),                      # array: not indexable
        reg.register("has", "contains(tags, 'x')", address=64),
        reg.register("neg", "tags[-1]", address=64),
        reg.register("big", lambda t: t is not None and len(t) > 1, fields=["tags"], address=64),
        reg.register("f", lambda rec: rec.get("score"), address=64),
    ]
    ev = SlowEvaluator(psfs)
    rec = b'{"tags":["x","\\u0079"],"score":2.50}'
    got = ev.values(rec)
    ids = {p.name: p.id for p in psfs}
    assert got == [(ids["len"], b"n2e0"), (ids["first"], b"sx"), (ids["has"], b"t"), (ids["neg"], b"sy"),
                   (ids["big"], b"t"), (ids["f"], b"n25e-1")]
    assert ev.values(orjson.loads(rec), parsed=True) == got
    assert ev.values(b'{"tags":[]}') == [(ids["len"], b"n0")]
    assert SlowEvaluator([]).values(b"not even json") == []


def test_values_match_the_oracle_on_mixed_records(reg):
    texts = ["length(a)", "a[-1]", "max(a)", "join(',', b)", "a[?@ > `1`] | [0]", "to_string(c)",
             "keys(@) | sort(@) | [0]", "c.d || `\"none\"`", "type(c)"]
    psfs = [reg.register(f"p{i}", t, address=64) for i, t in enumerate(texts)]
    ev = SlowEvaluator(psfs)
    records = [{"a": [1, 2, 3], "b": ["x", "y"], "c": {"d": 7}}, {"a": "str", "b": [1]}, {}, {"c": None}]
    for obj in records:
        want = []
        for p in psfs:
            try:
                v = canon_ref(p.expression.search(obj))
            except Exception:
                v = None
            if v is not None:
                want.append((p.id, v))
        assert ev.values(orjson.dumps(obj)) == want


def test_errors_are_no_value_counted_and_logged(reg, caplog):
    def boom(rec):
        raise RuntimeError("user bug")

    bad = reg.register("bad", boom, address=64)
    typed = reg.register("typed", "length(n)", address=64)   # number: jmespath type error
    good = reg.register("good", "n", address=64)
    ev = SlowEvaluator([bad, typed, good])
    with caplog.at_level(logging.DEBUG, logger="shoal.psf.slowpath"):
        for _ in range(3):
            assert ev.values(b'{"n":5}') == [(good.id, b"n5e0")]
    assert ev.errors == {bad.id: 3, typed.id: 3}
    assert isinstance(ev.last_error[bad.id], RuntimeError)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "bad" in warnings[0].getMessage()


def test_reloaded_callable_without_function_yields_nothing(tmp_path):
    path = tmp_path / "psfs.json"
    Registry(path).register("big", lambda s: s, fields=["size"], address=64)
    psf = Registry(path).get("big")
    ev = SlowEvaluator([psf])
    assert ev.values(b'{"size":4}') == [] and ev.errors == {psf.id: 1}


def test_mixed_ordering_is_null_not_an_error(reg):
    p = reg.register("cmp", "a < 'x' || length(b)", address=64)
    ev = SlowEvaluator([p])
    assert ev.values(b'{"a":1,"b":[1,2]}') == [(p.id, b"n2e0")]
    assert ev.errors == {}
