"""NDJSON framed inside the native ingest call (lazy batches) against framing
first (eager batches, the path Python-side PSFs need).

The same chunks go through both paths into twin stores: the results (counts,
every error's line, reason and offset) and the stored records must be equal,
whatever the input's bad lines, blank lines, over-long lines and chunk cuts.
Also the span budget of one lazy batch, which ends a batch before its bytes
do."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import ALL
from test_framing_properties import _cut, _dump, json_values

import shoal
import shoal.ingest.ingest as ingest_mod
from shoal.config import KiB
from shoal.ingest.framing import Framer

PAGE = 4 * KiB
LIMIT = 300


class _EagerFramer(Framer):
    def __init__(self, *args, lazy: bool = False, **kw):
        super().__init__(*args, lazy=False, **kw)


class _SpyFramer(Framer):
    """Records whether batches were lazy (all but the one-span batches that
    report an over-long line cut by a chunk boundary)."""
    seen: list[bool] = []

    def batches(self, chunks):
        for b in super().batches(chunks):
            _SpyFramer.seen.append(b.lazy or (b.n_spans == 1 and b.spans[0].status != 0))
            yield b


def _open(path, **overrides):
    opts = dict(page_size_bytes=PAGE, memory_budget_bytes=2 * PAGE, segment_size_bytes=4 * PAGE,
                batch_bytes=4 * KiB, max_record_bytes=LIMIT)
    s = shoal.open(path, **dict(opts, **overrides))
    s.register_psf("t", "t")
    return s


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    a, b = _open(tmp_path_factory.mktemp("lazy")), _open(tmp_path_factory.mktemp("eager"))
    yield a, b
    a.close()
    b.close()


_bad = st.sampled_from([b'{"t":}', b"[1,", b'"\xff"', b"nul", b"{} {}", b'{"t":"' + b"x" * LIMIT + b'"}'])


@st.composite
def mixed_inputs(draw, max_lines: int = 30):
    parts = []
    for _ in range(draw(st.integers(0, max_lines))):
        parts.append(draw(st.sampled_from([b"", b"\n", b"\r\n", b" \n\t\n"])))
        if draw(st.integers(0, 3)) == 0:
            parts.append(draw(_bad))
        else:
            parts.append(draw(st.sampled_from([b"", b" "])) + _dump(draw(json_values), draw(st.integers(0, 3))))
        parts.append(draw(st.sampled_from([b"\n", b"\r\n", b" \n"])))
    if parts and draw(st.booleans()):
        parts.pop()
    return _cut(draw, b"".join(parts))


def _stored(store, tail):
    return [r.raw for r in store.scan(ALL, order="oldest", from_address=tail)]


def _summary(res):
    return res.ingested, res.rejected, res.input_bytes, [(e.line, e.reason, e.offset) for e in res.errors]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=mixed_inputs(), on_error=st.sampled_from(["skip", "reject"]))
def test_lazy_and_eager_framing_agree(twins, chunks, on_error, monkeypatch_module):
    lazy, eager = twins
    tails = lazy.tail_address, eager.tail_address
    got = []
    for store, framer in ((lazy, _SpyFramer), (eager, _EagerFramer)):
        _SpyFramer.seen = []
        monkeypatch_module.setattr(ingest_mod, "Framer", framer)
        try:
            got.append(("ok", _summary(store.ingest(iter(chunks), on_error=on_error, format="ndjson"))))
        except shoal.IngestRejected as e:
            got.append(("rejected", _summary(e.result)))
        if framer is _SpyFramer:
            assert all(_SpyFramer.seen)  # the lazy path was taken
    assert got[0] == got[1]
    assert _stored(lazy, tails[0]) == _stored(eager, tails[1])


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_span_budget_ends_a_lazy_batch(tmp_path):
    """More records than one batch's span array holds, in fewer bytes than
    batch_bytes: every record lands once, and the line numbers of errors
    after the first batch are right."""
    n = 70_000  # > 65,536 spans in a 1 MiB batch
    data = b"1\n" * n + b"\n{bad}\n" + b"2\n" * 10
    with shoal.open(tmp_path / "s") as s:
        res = s.ingest(data)
        assert (res.ingested, res.rejected) == (n + 10, 1)
        assert [(e.line, e.reason) for e in res.errors] == [(n + 2, res.errors[0].reason)]
        assert res.errors[0].reason.startswith("invalid JSON")
        raws = [r.raw for r in s.scan(ALL, order="oldest")]
        assert raws == [b"1"] * n + [b"2"] * 10
