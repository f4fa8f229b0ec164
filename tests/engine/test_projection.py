"""Projections (fields=) on queries and scans, against an oracle that builds
each expected object with plain dict lookups (plain paths) and jmespath
(other expressions) over the same records, generated and real."""
from __future__ import annotations

import jmespath
import orjson
import pytest
from oracle import Log

import shoal

MISSING = object()


def expected(obj, fields):
    """The projection of one parsed record, written independently of shoal."""
    out: dict = {}
    for f in fields:
        keys = _plain(f)
        if keys is None:
            try:
                v = jmespath.search(f, obj)
            except jmespath.exceptions.JMESPathError:
                v = None
            if v is not None:
                out[f] = v
            continue
        cur = obj
        for k in keys:
            cur = cur.get(k, MISSING) if isinstance(cur, dict) else MISSING
            if cur is MISSING:
                break
        if cur is MISSING:
            continue
        node = out
        for k in keys[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict) or nxt is cur:
                nxt = node[k] = dict(nxt) if isinstance(nxt, dict) else {}
            node = nxt
        if keys[-1] not in node or not isinstance(node[keys[-1]], dict):
            node[keys[-1]] = cur
    return out


def _plain(f: str):
    """Keys of a dotted path of identifiers or quoted names; None otherwise."""
    keys, rest = [], f
    while rest:
        if rest.startswith('"'):
            end = rest.index('"', 1)
            keys.append(rest[1:end])
            rest = rest[end + 1:]
        else:
            head, _, tail = rest.partition(".")
            if not head.isidentifier():
                return None
            keys.append(head)
            rest = "." + tail if tail else ""
        if rest.startswith("."):
            rest = rest[1:]
        elif rest:
            return None
    return keys


CASES = {
    "github": ("github_events", ["type", "repo.name", "actor.login", "payload.size", "payload.commits",
                                 "org", "length(payload.commits)", "payload.commits[0].sha"]),
    "zeek": ("zeek_logs", ["_path", '"id.orig_h"', '"id.resp_p"', "query", "answers", "TTLs[0]", "rtt"]),
}


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("case", list(CASES))
def test_projection_matches_the_oracle(open_store, records, source, case):
    kind, fields = CASES[case]
    raws = records(source, kind, 1500)
    store = open_store()
    store.register_psf("p", fields[0])
    store.ingest(b"\n".join(raws))
    log = Log(raws)
    log.bind(store)
    by_addr = dict(zip(log.addresses, log.objs))
    for fs in (fields, [f for f in fields if _plain(f) is not None], fields[1:3]):
        got = list(store.scan("`true`", fields=fs, order="oldest"))
        assert [r.address for r in got] == log.addresses
        for r in got:
            assert orjson.loads(r.raw) == expected(by_addr[r.address], fs), (fs, r.address)
        value = log.objs[0].get(fields[0]) if isinstance(log.objs[0], dict) else None
        if value is not None:
            q = list(store.query("p", value, fields=fs))
            assert [r.address for r in q] == [a for a, _ in log.query(fields[0], value)]
            for r in q:
                assert orjson.loads(r.raw) == expected(by_addr[r.address], fs)
            batches = list(store.query_batches([("p", value)], fields=fs))
            assert [r.raw for b in batches for r in b] == [r.raw for r in q]
            assert b"".join(bytes(b.ndjson()) for b in batches) == b"".join(r.raw + b"\n" for r in q)


def test_projection_keeps_values_as_stored(store):
    store.ingest(b'{"a": {"b": 1.50, "c": "\\u0041\\n", "d": [1,  2]}, "e": null}\n'
                 b'{"a": "flat"}\n[1]\n"s"\n{"a": {"x": 1}}')
    got = [r.raw for r in store.scan("`true`", fields=["a.b", "a.c", "a.d", "e"], order="oldest")]
    assert got == [b'{"a":{"b":1.50,"c":"\\u0041\\n","d":[1,  2]},"e":null}', b"{}", b"{}", b"{}", b"{}"]
    # a path that is a prefix of another takes the object whole, whatever their order
    assert [r.raw for r in store.scan("`true`", fields=["a", "a.b"], order="oldest")][:2] == \
        [b'{"a":{"b": 1.50, "c": "\\u0041\\n", "d": [1,  2]}}', b'{"a":"flat"}']


def test_projection_errors(store):
    store.register_psf("t", "t")
    store.ingest(b'{"t": 1}')
    for bad in ([], "type", [1], ["a["]):
        with pytest.raises((shoal.InvalidArgument, shoal.PSFDefinitionError)):
            list(store.query("t", 1, fields=bad))
    with pytest.raises(shoal.ExpressionTooLong):
        list(store.scan("`true`", fields=["a" * 100_000]))
