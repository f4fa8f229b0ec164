"""Keyed stores: get_key, superseding versions, delete_key, and PSF queries
that return live versions only. The oracle is a plain dict (last write per
key wins, a delete removes the key) over the same records."""
from __future__ import annotations

import orjson
import pytest
from oracle import search, value_key

import shoal
from shoal.errors import IngestRejected, InvalidArgument


class KeyedOracle:
    """What a keyed store must hold: every version in ingest order, and the
    index of each key's live version (None once deleted)."""

    def __init__(self, key_expression: str):
        self.key_expression = key_expression
        self.raws: list[bytes] = []
        self.objs: list[object] = []
        self.live: dict[tuple, int | None] = {}

    def ingest(self, raws: list[bytes]) -> bytes:
        for raw in raws:
            obj = orjson.loads(raw)
            k = value_key(search(self.key_expression, obj))
            self.raws.append(raw)
            self.objs.append(obj)
            self.live[k] = len(self.raws) - 1
        return b"\n".join(raws) + b"\n"

    def delete(self, key) -> bool:
        k = value_key(key)
        if self.live.get(k) is None:
            return False
        self.live[k] = None
        return True

    def live_indexes(self) -> list[int]:
        return sorted(i for i in self.live.values() if i is not None)

    def get(self, key) -> bytes | None:
        i = self.live.get(value_key(key))
        return None if i is None else self.raws[i]


def _addresses(store: shoal.Store, oracle: KeyedOracle) -> list[int]:
    """Address of every version, learnt from a full scan with history."""
    found = [(r.address, r.raw) for r in store.scan("`true`", order="oldest", include_superseded=True)]
    assert [raw for _, raw in found] == oracle.raws
    return [a for a, _ in found]


def _github_versions(generated, n: int = 120) -> tuple[list[bytes], list[bytes]]:
    """Generated GitHub events, then new versions of every third one: a changed
    type for some, so a superseded version must drop out of its old chain."""
    first = list(generated("github_events", n))
    second = []
    for i, raw in enumerate(first):
        if i % 3 == 0:
            obj = orjson.loads(raw)
            obj["rev"] = 2
            if i % 2 == 0:
                obj["type"] = "RewrittenEvent"
            second.append(orjson.dumps(obj))
    return first, second


def test_get_key_returns_the_newest_version_and_delete_hides_it(open_store):
    store = open_store(key="id")
    store.ingest(b'{"id": 1, "v": "a"}\n{"id": 2, "v": "b"}\n{"id": 1, "v": "c"}\n')
    assert store.get_key(1).json() == {"id": 1, "v": "c"}
    assert store.get_key(1.0).json() == {"id": 1, "v": "c"}  # JSON semantics: 1 == 1.0
    assert store.get_key("1") is None  # a string is another key
    assert store.get_key(3) is None
    assert store.delete_key(1) is True
    assert store.get_key(1) is None
    assert store.delete_key(1) is False  # nothing live to delete: nothing written
    assert store.delete_key(99) is False
    assert store.get_key(2).json() == {"id": 2, "v": "b"}
    store.ingest(b'{"id": 1, "v": "d"}\n')  # a key comes back after a delete
    assert store.get_key(1).json() == {"id": 1, "v": "d"}


def test_delete_keys_deletes_each_live_key_once(open_store):
    store = open_store(key="id")
    store.register_psf("v", "v")
    store.ingest(b"".join(b'{"id": %d, "v": %d}\n' % (i, i % 3) for i in range(30)))
    store.ingest(b'{"id": "7", "v": 0}\n')  # a string key beside the number 7
    gone = [3, 4, 4, 4.0, 7, 100]  # a key named twice, 4.0 is 4, 100 was never stored
    assert store.delete_keys(gone) == 3
    live = [i for i in range(30) if i not in (3, 4, 7)]
    for v in range(3):
        assert store.count("v", v) == sum(1 for i in live if i % 3 == v) + (v == 0)
        assert sorted(r.json()["id"] for r in store.query("v", v) if r.json()["id"] != "7") == \
            [i for i in live if i % 3 == v]
    assert store.get_key("7").json() == {"id": "7", "v": 0}
    assert store.delete_keys([3, 4]) == 0  # nothing live: nothing written
    assert store.delete_keys([]) == 0
    with pytest.raises(InvalidArgument):
        store.delete_keys([[1]])


def test_queries_return_live_versions_against_a_dict_oracle(open_store, generated):
    """Tiny pages: most of the log, key chains included, is on disk."""
    first, second = _github_versions(generated)
    oracle = KeyedOracle("id")
    store = open_store(key="id")
    store.register_psf("type", "type")
    store.ingest(oracle.ingest(first))
    store.ingest(oracle.ingest(second))
    deleted = [orjson.loads(raw)["id"] for raw in first[1::7]]
    for k in deleted:
        assert store.delete_key(k) == oracle.delete(k)
    addresses = _addresses(store, oracle)

    def expect(indexes, newest=True):
        out = [(addresses[i], oracle.raws[i]) for i in indexes]
        return out[::-1] if newest else out

    live = oracle.live_indexes()
    types = sorted({o["type"] for o in oracle.objs})
    assert "RewrittenEvent" in types
    for t in types:
        want = [i for i in live if oracle.objs[i]["type"] == t]
        got = [(r.address, r.raw) for r in store.query("type", t)]
        assert got == expect(want), t
        history = [i for i in range(len(oracle.raws)) if oracle.objs[i]["type"] == t]
        got = [(r.address, r.raw) for r in store.query("type", t, include_superseded=True)]
        assert got == expect(history), t
        assert [r.raw for r in store.query("type", t, limit=5, order="oldest")] == \
            [oracle.raws[i] for i in want[:5]]
    assert [(r.address, r.raw) for r in store.scan("`true`")] == expect(live)
    assert list(store.query_addresses([("type", "PushEvent")])) == \
        [a for a, _ in expect([i for i in live if oracle.objs[i]["type"] == "PushEvent"])]
    for raw in first[:200]:
        k = orjson.loads(raw)["id"]
        got = store.get_key(k)
        assert (got.raw if got else None) == oracle.get(k)


def test_psf_registered_later_scans_live_versions_only(open_store, generated):
    """A PSF registered after the data answers by scanning: tombstones never
    match and superseded versions are filtered the same way."""
    first, second = _github_versions(generated)
    oracle = KeyedOracle("id")
    store = open_store(key="id")
    store.ingest(oracle.ingest(first))
    store.ingest(oracle.ingest(second))
    for raw in first[::5]:
        k = orjson.loads(raw)["id"]
        assert store.delete_key(k) == oracle.delete(k)
    store.register_psf("actor", "actor.login")
    addresses = _addresses(store, oracle)
    live = oracle.live_indexes()
    for login in sorted({o["actor"]["login"] for o in oracle.objs})[:40]:
        want = [(addresses[i], oracle.raws[i]) for i in live if oracle.objs[i]["actor"]["login"] == login]
        assert [(r.address, r.raw) for r in store.query("actor", login)] == want[::-1]


def test_keys_survive_reopen_with_and_without_checkpoint(open_store, store_path, generated):
    first, second = _github_versions(generated, 60)
    oracle = KeyedOracle("id")
    store = open_store(key="id")
    store.register_psf("type", "type")
    store.ingest(oracle.ingest(first))
    store.checkpoint()
    store.ingest(oracle.ingest(second))  # after the checkpoint: replayed on open
    gone = orjson.loads(first[3])["id"]
    oracle.delete(gone)
    store.delete_key(gone)
    store.close()
    store = open_store()  # the key is part of the store's layout
    assert store.key == "id"
    assert store.get_key(gone) is None
    for raw in first:
        k = orjson.loads(raw)["id"]
        got = store.get_key(k)
        assert (got.raw if got else None) == oracle.get(k)
    want = [oracle.raws[i] for i in oracle.live_indexes() if oracle.objs[i]["type"] == "PushEvent"]
    assert [r.raw for r in store.query("type", "PushEvent", order="oldest")] == want


def test_records_without_a_scalar_key_are_rejected(open_store):
    store = open_store(key="user.id")
    data = (b'{"user": {"id": "u1"}}\n{"user": {}}\n{"user": {"id": [1]}}\n'
            b'{"user": {"id": true}}\n{"user": {"id": null}}\n{"user": {"id": 7}}\n')
    result = store.ingest(data)
    assert (result.ingested, result.rejected) == (2, 4)
    assert [e.line for e in result.errors] == [2, 3, 4, 5]
    assert all("no key" in e.reason for e in result.errors)
    with pytest.raises(IngestRejected):
        store.ingest(b'{"user": {"id": "u2"}}\n{"nope": 1}\n', on_error="reject")
    assert store.get_key("u2") is None  # reject mode stored nothing
    assert store.get_key(7).json() == {"user": {"id": 7}}


def test_a_key_expression_c_cannot_evaluate_uses_the_slow_path(open_store):
    """join() is not compiled to C: Python computes the key; same semantics."""
    store = open_store(key="join('/', [org, name])")
    result = store.ingest(b'{"org": "a", "name": "x", "v": 1}\n{"org": "a", "name": "y", "v": 2}\n'
                          b'{"org": "a", "name": "x", "v": 3}\n{"org": 1, "name": "x"}\n')
    assert (result.ingested, result.rejected) == (3, 1)
    assert "no key" in result.errors[0].reason
    assert store.get_key("a/x").json()["v"] == 3
    store.register_psf("v", "v")
    assert [r.json()["v"] for r in store.query("v", 1, include_superseded=True)] == [1]
    assert list(store.query("v", 1)) == []
    with pytest.raises(IngestRejected):
        store.ingest(b'{"org": "b", "name": "z"}\n{"org": "b"}\n', on_error="reject")
    assert store.get_key("b/z") is None


def test_the_key_is_fixed_when_a_store_is_created(open_store, store_path, tmp_path):
    open_store(key="id").close()
    with pytest.raises(InvalidArgument, match="key"):
        shoal.open(store_path, key="other")
    plain = tmp_path / "plain"
    open_store(plain).close()
    with pytest.raises(InvalidArgument, match="key"):
        shoal.open(plain, key="id")
    with pytest.raises(InvalidArgument, match="no key"):
        open_store(plain).get_key(1)


@pytest.mark.parametrize("bad", [None, True, [1], {"a": 1}])
def test_bad_key_arguments_are_clear_errors(open_store, bad):
    store = open_store(key="id")
    with pytest.raises(InvalidArgument, match="key"):
        store.get_key(bad)
    with pytest.raises(InvalidArgument, match="key"):
        store.delete_key(bad)


def test_an_invalid_key_expression_is_a_clear_error(store_path):
    with pytest.raises(InvalidArgument, match="key"):
        shoal.open(store_path, key="a[")
