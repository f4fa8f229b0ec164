"""Expression cost bounds: length and nesting at compile time (psf/limits.py),
steps and built bytes per record at evaluation (psf/budget.py), and what a
store does with a PSF or scan over them: records are stored, the PSF yields
no value (counted), a scan stops with EvaluationBudgetExceeded, a saved PSF
over the limits of a later open does not stop the store from opening."""
from __future__ import annotations

import json
import logging
import threading
import time
import tracemalloc

import pytest

import shoal
from shoal.config import ExpressionLimits
from shoal.errors import (EvaluationBudgetExceeded, ExpressionTooDeep, ExpressionTooLong, PSFDefinitionError)
from shoal.psf import EvaluationBudget, NativePSFSet, Registry, SlowEvaluator, canonical, parse_definition

ROOMY = ExpressionLimits(max_expression_chars=10**7, max_expression_depth=10**6)


def path_of(segments: int) -> str:
    return ".".join(["a"] * segments)


def pipe_bomb(stages: int) -> str:
    """~11 characters per stage; each stage doubles what to_string writes."""
    return "`1`" + " | [@,@]" * stages + " | length(to_string(@))"


# ---- length ----

def test_a_32kb_path_is_refused_at_once():
    text = path_of(16_000)  # 31,999 characters: ~1 GB to compile before
    t0 = time.perf_counter()
    with pytest.raises(ExpressionTooLong) as info:
        parse_definition(text)
    assert time.perf_counter() - t0 < 0.05
    e = info.value
    assert isinstance(e, PSFDefinitionError)
    assert (e.length, e.limit, e.position) == (31_999, 4096, 4096)
    assert "max_expression_chars" in str(e) and "--max-expression-chars" in str(e)


def test_the_length_limit_is_configurable():
    text = path_of(3000)
    with pytest.raises(ExpressionTooLong):
        parse_definition(text)
    assert parse_definition(text, ExpressionLimits(max_expression_chars=len(text))).native
    assert parse_definition(path_of(2048)).native  # 4,095 characters: within the default


def test_compiling_a_long_path_is_linear():
    """16,000 segments once took ~1 GB (a tuple per prefix); with the limit
    raised it compiles, natively, in a few MB."""
    tracemalloc.start()
    try:
        e = parse_definition(path_of(16_000), ROOMY)
        s = NativePSFSet.build_single(e)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert e.native and s.n_slots == 1
    assert peak < 32 * 2**20, peak


# ---- nesting ----

@pytest.mark.parametrize("text", [
    "(" * 1000 + "a" + ")" * 1000,
    "!" * 1000 + "a",
    "[" * 1000 + "a" + "]" * 1000,
    "abs(" * 500 + "a" + ")" * 500,
    "a[?" * 500 + "b" + "]" * 500,
    "{a:" * 500 + "b" + "}" * 500,
    "`" + "[" * 1000 + "]" * 1000 + "`",  # a JSON literal nests too
    "! ! " * 500 + "a",
], ids=["parens", "not", "brackets", "abs", "filters", "braces", "literal", "spaced-not"])
def test_deep_nesting_is_refused_before_parsing(text):
    with pytest.raises(ExpressionTooDeep) as info:
        parse_definition(text)
    e = info.value
    assert e.limit == 64 and e.depth == 65 and e.position is not None and e.position < 300
    assert "max_expression_depth" in str(e)


def test_100000_parens():
    text = "(" * 100_000 + "a" + ")" * 100_000
    with pytest.raises(ExpressionTooLong):
        parse_definition(text)
    with pytest.raises(ExpressionTooDeep) as info:
        parse_definition(text, ExpressionLimits(max_expression_chars=10**6))
    assert info.value.position == 64


def test_nesting_past_what_the_parser_can_follow_is_refused_not_a_recursion_error():
    for text in ("(" * 100_000 + "a" + ")" * 100_000, "a" + "[*].a" * 5000, "!" * 100_000 + "a"):
        with pytest.raises(ExpressionTooDeep):
            parse_definition(text, ROOMY)


@pytest.mark.parametrize("text", [
    "a" + "[*].a" * 65,          # a chain of projections
    "a" + " | a" * 65,           # pipe stages
    "a" + " || a" * 65,          # operands of ||
], ids=["projections", "pipe", "or"])
def test_nesting_the_text_does_not_bracket_is_measured_on_the_tree(text):
    with pytest.raises(ExpressionTooDeep) as info:
        parse_definition(text)
    assert info.value.depth == 65 and info.value.position is None
    assert parse_definition(text, ExpressionLimits(max_expression_depth=100)).text == text


def test_brackets_in_strings_do_not_count_and_depth_64_is_fine():
    assert parse_definition("'" + "(" * 500 + "' == a").native
    assert parse_definition('"' + "[" * 500 + '" == `1`').native
    assert parse_definition('`"' + "[{" * 300 + '"` == a').native
    assert parse_definition("a != `1` && !c").native
    assert parse_definition("(" * 63 + "a" + ")" * 63).native
    with pytest.raises(ExpressionTooDeep):
        parse_definition("(" * 65 + "a" + ")" * 65)


def test_unbalanced_brackets_are_a_parse_error_not_a_limit():
    with pytest.raises(PSFDefinitionError) as info:
        parse_definition(")))a")
    assert type(info.value) is PSFDefinitionError


# ---- the evaluation budget ----

def test_the_pipe_bomb_stops_at_the_byte_budget_in_bounded_time_and_memory():
    e = parse_definition(pipe_bomb(26))  # ~300 characters: 10 s and 520 MB per record before
    b = EvaluationBudget()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(EvaluationBudgetExceeded) as info:
            b.search(e, {})
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.limit == "max_eval_bytes" and "--max-eval-bytes" in str(info.value)
    assert dt < 0.5 and peak < 8 * 2**20, (dt, peak)


def test_a_16_stage_pipe_bomb_is_over_the_default_budget_and_fine_with_more():
    e = parse_definition(pipe_bomb(16))
    with pytest.raises(EvaluationBudgetExceeded):
        EvaluationBudget().search(e, {})
    roomy = EvaluationBudget(ExpressionLimits(max_eval_bytes=64 * 2**20))
    assert roomy.search(e, {}) == e.search({}) == 2**18 - 3


def test_the_step_budget():
    rec = {"items": [{"n": i} for i in range(60_000)]}
    e = parse_definition("items[?n > `5`].n")
    with pytest.raises(EvaluationBudgetExceeded) as info:
        EvaluationBudget().search(e, rec)
    assert info.value.limit == "max_eval_steps"
    roomy = EvaluationBudget(ExpressionLimits(max_eval_steps=10**6))
    assert roomy.search(e, rec) == list(range(6, 60_000))


def test_shared_values_are_measured_by_what_they_unfold_to():
    """[x, x] holds x twice: a built value is as big as its JSON text, so
    doubling stages run into the budget (and measuring them stays cheap)."""
    b = EvaluationBudget(ExpressionLimits(max_eval_bytes=10_000))
    assert b.search(parse_definition("`1` | [@,@] | [@,@] | [@,@]"), {}) == [[[1, 1], [1, 1]], [[1, 1], [1, 1]]]
    with pytest.raises(EvaluationBudgetExceeded):
        b.search(parse_definition("`1`" + " | [@,@]" * 12), {})
    # comparing two big shared structures is bounded the same way
    with pytest.raises(EvaluationBudgetExceeded):
        b.search(parse_definition("(`1`" + " | [@,@]" * 12 + ") == (`1`" + " | [@,@]" * 12 + ")"), {})


def test_values_read_from_the_record_cost_nothing_until_copied():
    big = {"s": "x" * 3_000_000, "a": list(range(300_000))}
    b = EvaluationBudget()
    assert b.search(parse_definition("length(s)"), big) == 3_000_000
    assert b.search(parse_definition("a[-1]"), big) == 299_999
    assert b.search(parse_definition("not_null(missing, a)"), big) is big["a"]  # an argument: not new
    with pytest.raises(EvaluationBudgetExceeded):
        b.search(parse_definition("[s]"), big)  # a built value holding 3 MB


@pytest.mark.parametrize("text", [
    "a.b", "a[0]", "a[*].b", "a[?b > `1`].b | sort(@)", "{x: a[0].b, y: length(a)}", "a[].b[]",
    "to_string(@)", "max_by(a, &b).b", "a[::2]", "*.b", "contains(keys(@), 'a')",
    "a[?b == `2`] | [0].b", "map(&b, a)", "join(',', ['x', 'y'])",
])
def test_within_budget_results_are_the_dialect_s(text):
    rec = {"a": [{"b": 1}, {"b": 2}, {"b": 3}], "c": {"b": 9}}
    e = parse_definition(text)
    assert EvaluationBudget().search(e, rec) == e.search(rec)


def test_a_budget_is_reset_per_record():
    e = parse_definition("a[*].b")
    b = EvaluationBudget(ExpressionLimits(max_eval_steps=50))
    rec = {"a": [{"b": i} for i in range(10)]}
    for _ in range(100):
        assert b.search(e, rec) == list(range(10))


def test_slow_evaluator_counts_records_over_budget():
    reg = Registry()
    bomb = reg.register("bomb", pipe_bomb(16), address=64)
    ok = reg.register("ok", "length(a[*])", address=64)
    over: dict[int, int] = {}
    ev = SlowEvaluator([bomb, ok], over_budget=over)
    for _ in range(3):
        assert ev.values(b'{"a":[1,2]}') == [(ok.id, canonical(2))]
    assert over == {bomb.id: 3} and ev.errors == {bomb.id: 3}
    assert isinstance(ev.last_error[bomb.id], EvaluationBudgetExceeded)


# ---- in a store ----

def _records(n: int) -> bytes:
    return b"".join(json.dumps({"i": i, "t": "x" if i % 2 else "y"}).encode() + b"\n" for i in range(n))


def test_a_pipe_bomb_psf_stores_every_record_and_counts_them(open_store):
    store = open_store()
    store.register_psf("bomb", pipe_bomb(16))
    store.register_psf("t", "t")  # native
    store.register_psf("big", "i > `250` && length(to_string(@)) > `0`")  # slow path, within budget
    res = store.ingest(_records(500))
    assert res.ingested == 500 and res.rejected == 0
    rows = {p["name"]: p for p in store.stats()["psfs"]}
    assert rows["bomb"]["over_budget"] == 500 and rows["bomb"]["eval_errors"] == 500
    assert rows["big"]["over_budget"] == 0 and rows["t"]["over_budget"] == 0
    assert sum(1 for _ in store.query("t", "x")) == 250
    assert sum(1 for _ in store.query("big")) == 249
    assert list(store.query("bomb", 2**18 - 3)) == []
    assert store.stats()["records"] == 500


def test_limits_come_from_the_store_config(open_store):
    store = open_store(max_expression_chars=100, max_expression_depth=16, max_eval_steps=1000,
                       max_eval_bytes=1000)
    with pytest.raises(ExpressionTooLong):
        store.register_psf("p", path_of(60))
    with pytest.raises(ExpressionTooDeep):
        store.register_psf("p", "(" * 17 + "a" + ")" * 17)
    with pytest.raises(ExpressionTooLong):
        next(store.scan(path_of(60)))
    store.ingest(b'{"a":[1,2,3]}\n')
    with pytest.raises(EvaluationBudgetExceeded):
        list(store.scan("`1`" + " | [@,@]" * 8))
    with pytest.raises(shoal.InvalidArgument):
        shoal.StoreConfig(max_eval_steps=0)


def test_a_scan_over_budget_stops_with_the_record_s_address(open_store):
    store = open_store()
    store.ingest(b'{"n":1}\n{"n":2}\n' + b'{"n":3,"big":true}\n' + b'{"n":4}\n')
    bad = [r.address for r in store.scan("big")][0]
    expr = "big && length(to_string(`1`" + " | [@,@]" * 20 + ")) > `0` || n == `1`"
    t0 = time.perf_counter()
    with pytest.raises(EvaluationBudgetExceeded) as info:
        list(store.scan(expr, order="oldest"))
    assert time.perf_counter() - t0 < 1
    assert info.value.address == bad and f"address {bad}" in str(info.value)
    assert info.value.limit == "max_eval_bytes"


def test_a_cancelled_scan_stops(open_store):
    store = open_store()
    store.ingest(_records(2000))
    slow = "length(to_string(`1`" + " | [@,@]" * 12 + ")) == `-1`"  # a few ms per record, no match
    cancel = threading.Event()
    it = store.scan_batches(slow, cancel=cancel)
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    t0 = time.perf_counter()
    assert list(it) == []
    assert time.perf_counter() - t0 < 2
    timer.join()
    cancel.set()
    assert list(store.scan("i == `1`", cancel=cancel)) == []  # native: stops before its first page
    assert [r.json()["i"] for r in store.scan("i == `1`")] == [1]


def test_a_saved_psf_over_the_limits_of_a_later_open_does_not_stop_the_store(open_store, store_path, caplog):
    store = open_store(max_expression_chars=10_000, max_expression_depth=200)
    store.register_psf("long", path_of(3000))
    store.register_psf("deep", "(" * 70 + "a.b" + ")" * 70 + " || a.c")
    store.register_psf("t", "t")
    store.ingest(_records(10))
    store.close()
    with caplog.at_level(logging.WARNING, logger="shoal.psf.registry"):
        store = open_store()  # default limits
    assert "indexes nothing" in caplog.text and "'long'" in caplog.text
    rows = {p["name"]: p for p in store.stats()["psfs"]}
    assert "max_expression_chars" in rows["long"]["failure"]
    assert "max_expression_depth" in rows["deep"]["failure"]
    assert rows["t"]["failure"] is None and rows["long"]["active"]
    assert store.ingest(_records(10)).ingested == 10
    assert store.stats()["records"] == 20
    assert list(store.query("long", 1)) == []
    assert sum(1 for _ in store.query("t", "x")) == 10
    store.deregister_psf("long")
    with pytest.raises(ExpressionTooLong):
        store.register_psf("long", path_of(3000))
    store.close()
    store = open_store(max_expression_chars=10_000, max_expression_depth=200)  # limits that admit them
    rows = {p["name"]: p for p in store.stats()["psfs"]}
    assert rows["long"]["failure"] is None and rows["deep"]["failure"] is None
    assert store.psf("deep").expression is not None
