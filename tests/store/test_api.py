"""The library's behaviour at its edges: lifecycle (close, double close, use
after close, the directory lock), argument checking, the PSF error cases,
the exception tree and the exported names."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap

import pytest

import shoal
from shoal import errors
from shoal.config import KiB, MiB

RECS = b'{"type":"PushEvent","n":1}\n{"type":"WatchEvent","n":2}\n{"type":"PushEvent","n":3}\n'


@pytest.fixture
def filled(store):
    store.register_psf("type", "type")
    store.ingest(RECS)
    return store


# ---- lifecycle ----

CALLS = {
    "ingest": lambda s: s.ingest(RECS),
    "query": lambda s: list(s.query("type", "PushEvent")),
    "query_all": lambda s: list(s.query_all([("type", "PushEvent")])),
    "query_any": lambda s: list(s.query_any([("type", "PushEvent")])),
    "scan": lambda s: list(s.scan("n > `1`")),
    "scan_slow": lambda s: list(s.scan("length(type) > `1`")),
    "get": lambda s: s.get(64),
    "register_psf": lambda s: s.register_psf("other", "n"),
    "deregister_psf": lambda s: s.deregister_psf("type"),
    "psf": lambda s: s.psf("type"),
    "psfs": lambda s: s.psfs(),
    "checkpoint": lambda s: s.checkpoint(),
    "flush": lambda s: s.flush(),
    "stats": lambda s: s.stats(),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_use_after_close_raises_store_closed(filled, call):
    filled.close()
    assert filled.closed
    with pytest.raises(shoal.StoreClosed):
        CALLS[call](filled)


def test_double_close_and_context_manager(open_store, store_path, tiny_config):
    s = open_store()
    s.close()
    s.close()
    with shoal.open(store_path, tiny_config) as s2:
        assert not s2.closed
        s2.ingest(RECS)
    assert s2.closed
    s2.close()
    with shoal.open(store_path, tiny_config) as s3:
        assert len(list(s3.scan("`true`"))) == 3


def test_a_second_open_in_the_same_process_is_locked(store, store_path, tiny_config):
    with pytest.raises(shoal.StoreLocked):
        shoal.open(store_path, tiny_config)
    store.ingest(RECS)  # the first store is unaffected
    assert len(list(store.scan("`true`"))) == 3
    store.close()
    with shoal.open(store_path, tiny_config) as again:
        assert len(list(again.scan("`true`"))) == 3


def test_another_process_is_locked_out(store, store_path):
    code = textwrap.dedent("""
        import sys, shoal
        try:
            shoal.open(sys.argv[1])
        except shoal.StoreLocked:
            sys.exit(7)
        sys.exit(0)
    """)
    assert subprocess.run([sys.executable, "-c", code, str(store_path)]).returncode == 7
    store.close()
    assert subprocess.run([sys.executable, "-c", code, str(store_path)]).returncode == 0


# ---- arguments ----

@pytest.mark.parametrize("overrides", [
    {"page_size_bytes": 3000},
    {"page_size_bytes": 2 * KiB},
    {"page_size_bytes": 16 * KiB, "memory_budget_bytes": 16 * KiB},
    {"page_size_bytes": 16 * KiB, "segment_size_bytes": 8 * KiB},
    {"page_size_bytes": 16 * KiB, "segment_size_bytes": 48 * KiB},
    {"batch_bytes": 1024},
    {"max_record_bytes": 0},
    {"max_reported_errors": -1},
    {"index_bucket_bits": 2},
    {"no_such_setting": 1},
])
def test_bad_settings(tmp_path, overrides):
    with pytest.raises(shoal.InvalidArgument):
        shoal.open(tmp_path / "s", **overrides)


@pytest.mark.parametrize("call", [
    lambda s: s.query("type", "x", order="sideways"),
    lambda s: s.query("type", "x", limit=-1),
    lambda s: s.query("type", "x", limit=1.5),
    lambda s: s.query("type", "x", from_address=-8),
    lambda s: s.query("type", "x", to_address="64"),
    lambda s: s.query("type", "x", from_address=True),
    lambda s: s.query_all([]),
    lambda s: s.query_any([]),
    lambda s: s.query_all([("type",)]),
    lambda s: s.query_all(["type"]),
    lambda s: s.query_any([(1, "x")]),
    lambda s: s.scan("n", order="up"),
    lambda s: s.scan("n", limit=-2),
    lambda s: s.get("64"),
    lambda s: s.get(True),
    lambda s: s.get(64.0),
    lambda s: s.get(-8),
    lambda s: s.ingest(RECS, on_error="ignore"),
    lambda s: s.ingest(RECS, format="csv"),
    lambda s: s.ingest(12345),
    lambda s: s.register_psf("", "type"),
    lambda s: s.register_psf(7, "type"),
    lambda s: s.register_psf("a\nb", "type"),
    lambda s: s.register_psf("x" * 1000, "type"),
    lambda s: s.register_psf("x", 42),
    lambda s: s.register_psf("x", "type", fields=["n"]),
    lambda s: s.register_psf("x", lambda v: v, fields="n"),
], ids=lambda f: inspect.getsource(f).strip().split(": ", 1)[-1].rstrip(","))
def test_invalid_arguments(filled, call):
    tail = filled.tail_address
    with pytest.raises(shoal.InvalidArgument):
        r = call(filled)
        if hasattr(r, "__next__"):
            list(r)
    assert filled.tail_address == tail
    assert [p.name for p in filled.psfs()] == ["type"]


def test_invalid_argument_is_a_value_error():
    assert issubclass(shoal.InvalidArgument, ValueError)


# ---- PSF errors ----

def test_unknown_psf(filled):
    for call in (lambda: filled.query("nope", 1), lambda: filled.query_all([("type", "x"), ("nope", 1)]),
                 lambda: filled.query_all([("type", None), ("nope", 1)]),  # no answer before every name is known
                 lambda: filled.query_any([("nope", 1)]), lambda: filled.psf("nope"),
                 lambda: filled.deregister_psf("nope")):
        with pytest.raises(shoal.PSFNotFound) as e:
            r = call()
            list(r) if hasattr(r, "__next__") else None
        assert isinstance(e.value, KeyError) and "nope" in str(e.value)


def test_duplicate_psf(filled):
    with pytest.raises(shoal.PSFExists):
        filled.register_psf("type", "type")
    with pytest.raises(shoal.PSFExists):
        filled.register_psf("type", "n")
    with pytest.raises(shoal.PSFExists):
        filled.register_psf("type", lambda r: 1)
    assert filled.psf("type").definition == "type"


@pytest.mark.parametrize("expression, position", [
    ("foo[", 4), ("a ==", 4), ("a.", 2), ("[?a == ]", 7), ("a | | b", 4), ("'unterminated", 0), ("", 0),
    ("a ~ b", 2),
])
def test_bad_expression_has_a_position(filled, expression, position):
    with pytest.raises(shoal.PSFDefinitionError) as e:
        filled.register_psf("bad", expression)
    assert isinstance(e.value.position, int) and 0 <= e.value.position <= len(expression)
    assert e.value.position == position
    with pytest.raises(shoal.PSFDefinitionError):
        list(filled.scan(expression))
    with pytest.raises(shoal.PSFNotFound):
        filled.psf("bad")


@pytest.mark.parametrize("expression", ["nosuchfunction(a)", "length(a, b)", "contains(a)"])
def test_bad_function_calls(filled, expression):
    with pytest.raises(shoal.PSFDefinitionError):
        filled.register_psf("bad", expression)


def test_psf_objects(filled):
    p = filled.psf("type")
    assert (p.name, p.definition, p.kind, p.native, p.active) == ("type", "type", shoal.PSFKind.PROJECTION, True, True)
    q = filled.register_psf("push", "type == 'PushEvent'")
    assert q.kind is shoal.PSFKind.PREDICATE and q.native and q.id != p.id
    r = filled.register_psf("len", "length(type)")
    assert r.kind is shoal.PSFKind.PROJECTION and not r.native
    c = filled.register_psf("c", lambda n: n, fields=["n"])
    assert c.kind is shoal.PSFKind.CALLABLE and c.definition is None
    assert q.ranges == [(filled.tail_address, None)]
    d = filled.deregister_psf("push")
    assert not d.active and d.ranges == []  # active for no record at all
    assert [x.name for x in filled.psfs(include_inactive=False)] == ["type", "len", "c"]
    assert [x.name for x in filled.psfs()] == ["type", "push", "len", "c"]


# ---- values, not exceptions ----

def test_expected_outcomes_are_values(filled):
    assert filled.get(filled.tail_address) is None
    assert filled.get(0) is None
    assert filled.get(2**47) is None
    for past_any_log in (2**48, 2**64 - 1, 2**64, 10**40):  # no record there; C takes 64 bits at most
        assert filled.get(past_any_log) is None
    assert list(filled.query("type", "NoSuchEvent")) == []
    for unindexable in (None, False, [1], {"a": 1}, float("nan"), float("inf")):
        assert list(filled.query("type", unindexable)) == []
    assert list(filled.scan("nosuchfield")) == []
    assert list(filled.query("type", "PushEvent", from_address=filled.tail_address)) == []
    assert list(filled.query("type", "PushEvent", to_address=0)) == []


def test_records(filled):
    recs = list(filled.query("type", "PushEvent", order="oldest"))
    assert [r.json()["n"] for r in recs] == [1, 3]
    r = recs[0]
    assert r == filled.get(r.address) and hash(r) == hash(filled.get(r.address))
    assert "PushEvent" in repr(r) and str(r.address) in repr(r)


def test_addresses_and_stats(filled):
    s = filled
    assert 0 < s.begin_address <= s.head_address <= s.read_only_address <= s.tail_address
    st = s.stats()
    assert st["records"] == 3 and st["addresses"]["tail"] == s.tail_address
    assert [p["name"] for p in st["psfs"]] == ["type"]
    assert st["ingest"]["records"] == 3 and st["ingest"]["calls"] == 1
    info = s.checkpoint()
    assert isinstance(info, shoal.CheckpointInfo) and info.tail_address == s.tail_address and info.records == 3
    s.checkpoint()
    s.checkpoint()
    assert s.checkpoints() == [2, 3]  # the two newest are kept
    assert s.flush() == s.tail_address


# ---- exports and the exception tree ----

def test_all_is_sorted_and_complete():
    assert list(shoal.__all__) == sorted(shoal.__all__)
    assert len(set(shoal.__all__)) == len(shoal.__all__)
    for name in shoal.__all__:
        assert hasattr(shoal, name), name
    tree = {n for n, v in vars(errors).items() if inspect.isclass(v) and issubclass(v, errors.ShoalError)}
    assert tree <= set(shoal.__all__)


def test_exception_tree():
    E = shoal
    assert all(issubclass(c, E.ShoalError) for c in (E.InvalidArgument, E.ParseError, E.IngestRejected,
                                                   E.PSFError, E.StorageError))
    assert all(issubclass(c, E.PSFError) for c in (E.PSFNotFound, E.PSFExists, E.PSFDefinitionError))
    assert all(issubclass(c, E.StorageError) for c in (E.StoreClosed, E.StoreLocked, E.RecordTooLarge,
                                                     E.CorruptionError, E.NativeIOError))
    assert issubclass(E.PSFNotFound, KeyError)
    e = E.ParseError("bad", line=3, offset=5)
    assert (e.line, e.offset, e.reason) == (3, 5, "bad") and "line 3" in str(e)


def test_a_store_with_pages_over_half_the_default_memory_reopens_with_defaults(tmp_path):
    """The default budget (256 MiB) holds two pages of up to 128 MiB; a store
    created with larger pages reopens without settings, with room for two
    pages (frames are allocated on first use: nothing that large is touched
    here). A budget given explicitly is checked as ever."""
    page = 256 * MiB
    with shoal.open(tmp_path, page_size_bytes=page, memory_budget_bytes=2 * page) as s:
        first = s.ingest(b'{"a":1}\n').first_address
    with shoal.open(tmp_path) as s:
        assert (s.config.page_size_bytes, s.config.memory_budget_bytes) == (page, 2 * page)
        assert s.get(first).raw == b'{"a":1}'
    with pytest.raises(shoal.InvalidArgument, match="at least two pages"):
        shoal.open(tmp_path, memory_budget_bytes=page)


def test_record_too_large_says_the_size_the_limit_and_how_to_raise_it():
    e = shoal.StoreConfig().record_too_large(5_000_000)
    assert isinstance(e, shoal.RecordTooLarge) and (e.size_bytes, e.max_record_bytes, e.page_size_bytes) == (
        5_000_000, 4 * MiB - 32, 4 * MiB)
    assert e.reason == "record too large: 5,000,000 bytes, over the 4,194,272 bytes that fit in one 4 MiB log page"
    assert str(e).startswith("a record of 5,000,000 bytes is too large: a record must fit in one log page, and this "
                             "store's pages are 4 MiB (page_size_bytes=4194304), so a record's JSON text may be at "
                             "most 4,194,272 bytes")
    assert "fixed when a store is created" in str(e) and "--page-size 64MiB" in str(e)
    assert "page_size_bytes=64 << 20" in str(e)
    unknown = shoal.StoreConfig().record_too_large()
    assert unknown.reason == "record too large: over the 4,194,272 bytes that fit in one 4 MiB log page"
    assert str(unknown).startswith("a record must fit in one log page")
    lowered = shoal.StoreConfig(max_record_bytes=1000).record_too_large(1234)
    assert lowered.lowered and lowered.reason == "record too large: 1,234 bytes, over max_record_bytes (1,000)"
    assert "max_record_bytes=1,000; raise it" in str(lowered)
    with_values = shoal.StoreConfig(page_size_bytes=8 * KiB).record_too_large(8000)  # text fits, values do not
    assert with_values.reason == ("record too large: 8,000 bytes, and with the values its PSFs index it does not "
                                  "fit in one 8 KiB log page")
    assert shoal.RecordTooLarge("as the server said").reason == "record too large"  # no fields: no numbers


def test_config_object():
    c = shoal.StoreConfig(page_size_bytes=8 * KiB, memory_budget_bytes=1 * MiB, segment_size_bytes=64 * KiB)
    assert shoal.StoreConfig.from_dict(c.to_dict()) == c
    assert c.replace(batch_bytes=8 * KiB).batch_bytes == 8 * KiB
    with pytest.raises(Exception):
        c.page_size_bytes = 1  # frozen
    assert shoal.parse_size("4KiB") == 4096 and shoal.parse_size("1m") == MiB and shoal.parse_size(5) == 5
    with pytest.raises(shoal.InvalidArgument):
        shoal.parse_size("lots")
