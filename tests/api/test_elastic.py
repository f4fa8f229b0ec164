"""The Elasticsearch-compatible bulk endpoint, driven by the official
clients (elasticsearch, opensearch-py) over loopback, and by hand for what
the clients never send. The oracle: every source sent, as bytes, and
orjson's verdict on each (a JSON object is stored, anything else fails
alone); the store is read back record by record.

Why this file is long: it covers the clients (four helpers, two client
libraries, gzip, auth through `shoal serve`), the protocol's edge cases
(malformed bodies, limits, metadata fields, keyed stores' delete and
update) and the index field's two modes, each against the same oracle.
"""
from __future__ import annotations

import gzip
import random

import httpx
import orjson
import pytest

import shoal

from shoal.api import create_app
from shoal.api.bulk import Bulk

es = pytest.importorskip("elasticsearch", reason="the elasticsearch client is a test dependency (pip install -e .[test])")
from elasticsearch import Elasticsearch, helpers  # noqa: E402

try:
    import opensearchpy
except ImportError:  # pragma: no cover - a test dependency
    opensearchpy = None


def stored(store) -> dict[int, bytes]:
    return {r.address: r.raw for r in store.scan("`true`", order="oldest")}


def with_index(src: bytes, index: str) -> bytes:
    """What the store holds for a source under the default index field."""
    head = b'{"_index":' + orjson.dumps(index)
    rest = src[src.index(b"{") + 1:]
    return head + (b"" if rest.lstrip().startswith(b"}") else b",") + rest


def is_object(src: bytes) -> bool:
    try:
        return isinstance(orjson.loads(src), dict)
    except orjson.JSONDecodeError:
        return False


def mixed_sources(records, source: str, n: int, seed: int = 5) -> list[bytes]:
    """n real or generated records with about one in ten spoiled: cut short,
    not an object, or holding a top-level _index."""
    raws = list(records(source, "github_events", n))
    rng = random.Random(seed)
    for i in range(len(raws)):
        r = rng.random()
        if r < 0.04:
            text = raws[i].decode()
            raws[i] = text[:len(text) // 2].encode()
        elif r < 0.07:
            raws[i] = b"[1, 2]"
        elif r < 0.09:
            raws[i] = b'{"_index": "mine", ' + raws[i][1:]
    return raws


def expect_ok(src: bytes) -> bool:
    return is_object(src) and "_index" not in orjson.loads(src)


# ---- the official clients ----

@pytest.fixture
def es_url(store, live_url_for):
    return live_url_for(create_app(store))


@pytest.mark.parametrize("source", ["generated", "real"])
@pytest.mark.parametrize("helper", ["bulk", "streaming_bulk", "parallel_bulk"])
def test_elasticsearch_helpers_store_every_acknowledged_source(store, es_url, records, source, helper):
    raws = mixed_sources(records, source, 1500)
    client = Elasticsearch(es_url, request_timeout=60)
    actions = [{"_index": "events", "_source": r.decode()} for r in raws]
    if helper == "bulk":
        ok, errors = helpers.bulk(client, actions, chunk_size=400, raise_on_error=False)
        results = None
    else:
        run = helpers.streaming_bulk if helper == "streaming_bulk" else helpers.parallel_bulk
        kw = {"thread_count": 2} if helper == "parallel_bulk" else {}
        results = list(run(client, actions, chunk_size=400, raise_on_error=False, **kw))
        ok = sum(1 for good, _ in results if good)
        errors = [item for good, item in results if not good]
    want = [r for r in raws if expect_ok(r)]
    assert ok == len(want)
    assert len(errors) == len(raws) - len(want)
    for e in errors:
        (op, item), = e.items()
        assert op == "index" and item["status"] == 400 and item["error"]["type"] == "mapper_parsing_exception"
    got = stored(store)
    if helper != "parallel_bulk":  # one thread: the log holds them in order
        assert list(got.values()) == [with_index(r, "events") for r in want]
    else:
        assert sorted(got.values()) == sorted(with_index(r, "events") for r in want)
    if results is not None:  # each acknowledgement names the record it stored
        for good, item in results:
            if good:
                a = item["index"]
                assert got[int(a["_id"])] == got[a["_seq_no"]]
    assert store.stats()["records"] == len(want)


def test_bulk_index_error_reaches_the_client(store, es_url):
    client = Elasticsearch(es_url)
    with pytest.raises(helpers.BulkIndexError) as info:
        helpers.bulk(client, [{"_index": "a", "_source": '{"ok": 1}'}, {"_index": "a", "_source": "{nope"},
                              {"_index": "Bad", "_source": '{"x": 1}'}])
    errs = info.value.errors
    assert [e["index"]["status"] for e in errs] == [400, 400]
    assert {e["index"]["error"]["type"] for e in errs} == {"mapper_parsing_exception", "invalid_index_name_exception"}
    assert list(stored(store).values()) == [b'{"_index":"a","ok": 1}']


def test_client_info_health_and_gzip(store, es_url):
    client = Elasticsearch(es_url, http_compress=True)
    info = client.info()
    assert info["version"]["number"].startswith("8.")
    assert client.cluster.health()["status"] == "green"
    assert client.ping()
    docs = [{"n": i, "text": "x" * (i % 50)} for i in range(3000)]
    ok, _ = helpers.bulk(client, ({"_index": "logs", "_source": d} for d in docs))
    assert ok == len(docs)
    back = [orjson.loads(r) for r in stored(store).values()]
    assert back == [{"_index": "logs", **d} for d in docs]


@pytest.mark.skipif(opensearchpy is None, reason="opensearch-py is a test dependency (pip install -e .[test])")
@pytest.mark.parametrize("source", ["generated", "real"])
def test_opensearch_bulk(store, es_url, records, source):
    raws = mixed_sources(records, source, 800, seed=9)
    client = opensearchpy.OpenSearch(es_url)
    ok, errors = opensearchpy.helpers.bulk(client, [{"_index": "os", "_source": r.decode()} for r in raws],
                                           raise_on_error=False)
    want = [r for r in raws if expect_ok(r)]
    assert ok == len(want) and len(errors) == len(raws) - len(want)
    assert list(stored(store).values()) == [with_index(r, "os") for r in want]


def test_sources_kept_byte_for_byte_without_an_index_field(store, live_url_for, records):
    url = live_url_for(create_app(store, es_index_field=None))
    raws = list(records("generated", "github_events", 500)) + [b' {"spaced" :  1 }', b"{}"]
    ok, _ = helpers.bulk(Elasticsearch(url), [{"_index": "x", "_source": r.decode()} for r in raws])
    assert ok == len(raws)
    assert list(stored(store).values()) == [r.strip() for r in raws]  # a line's edges are not the record's


def test_keyed_store_index_delete_update(open_store, live_url_for):
    store = open_store(key="id")
    client = Elasticsearch(live_url_for(create_app(store)))
    actions = [
        {"_op_type": "index", "_index": "u", "_id": "a", "_source": {"n": 1}},          # key from _id
        {"_op_type": "index", "_index": "u", "_id": "ignored", "_source": {"id": "b", "n": 2}},  # the field wins
        {"_op_type": "create", "_index": "u", "_id": "a", "_source": {"n": 3}},         # exists: 409
        {"_op_type": "update", "_index": "u", "_id": "a", "doc": {"m": {"k": 1}}},
        {"_op_type": "update", "_index": "u", "_id": "zz", "doc": {"n": 9}},            # missing: 404
        {"_op_type": "update", "_index": "u", "_id": "c", "doc": {"n": 4}, "doc_as_upsert": True},
        {"_op_type": "delete", "_index": "u", "_id": "b"},
        {"_op_type": "delete", "_index": "u", "_id": "b"},                              # gone: 404
    ]
    results = list(helpers.streaming_bulk(client, actions, raise_on_error=False, raise_on_exception=False))
    got = [(list(i)[0], i[list(i)[0]]["status"], i[list(i)[0]].get("result"), i[list(i)[0]]["_id"])
           for _, i in results]
    assert got == [("index", 201, "created", "a"), ("index", 201, "created", "b"), ("create", 409, None, "a"),
                   ("update", 200, "updated", "a"), ("update", 404, None, "zz"), ("update", 201, "created", "c"),
                   ("delete", 200, "deleted", "b"), ("delete", 404, "not_found", "b")]
    assert orjson.loads(store.get_key("a").raw) == {"_index": "u", "id": "a", "n": 1, "m": {"k": 1}}
    assert orjson.loads(store.get_key("c").raw) == {"_index": "u", "id": "c", "n": 4}
    assert store.get_key("b") is None


def test_keyed_store_numeric_keys_by_their_id(open_store, live_url_for):
    store = open_store(key="id")
    store.ingest(b'{"id": 7, "v": 1}\n{"id": "7x", "v": 2}')
    client = Elasticsearch(live_url_for(create_app(store)))
    r = client.bulk(operations=[{"update": {"_index": "k", "_id": "7"}}, {"doc": {"v": 5}},
                                {"delete": {"_index": "k", "_id": "7x"}}])
    assert [list(i.values())[0]["status"] for i in r["items"]] == [200, 200]
    assert orjson.loads(store.get_key(7).raw) == {"_index": "k", "id": 7, "v": 5}
    assert store.get_key("7x") is None


# ---- shoal serve, with tokens ----

@pytest.mark.slow
def test_clients_authenticate_against_shoal_serve(tmp_path):
    from serverproc import ServerProcess
    token = "es-token-0123456789abcdef"
    with ServerProcess(tmp_path / "data", "--token", token, "--es-index-field", "tag", module="shoal.cli") as srv:
        for client in (Elasticsearch(srv.url, api_key=token), Elasticsearch(srv.url, bearer_auth=token)):
            ok, _ = helpers.bulk(client, [{"_index": "auth", "_source": {"i": i}} for i in range(100)])
            assert ok == 100
        with pytest.raises(es.AuthenticationException):
            Elasticsearch(srv.url).info()
        with pytest.raises(es.AuthenticationException):
            Elasticsearch(srv.url, api_key="wrong-token-000000").info()
        if opensearchpy is not None:
            client = opensearchpy.OpenSearch(srv.url, headers={"Authorization": f"Bearer {token}"})
            assert opensearchpy.helpers.bulk(client, [{"_index": "auth", "_source": {"o": 1}}])[0] == 1
        n = httpx.get(srv.url + "/stats", headers={"Authorization": f"Bearer {token}"}).json()["records"]
        assert n == 200 + (opensearchpy is not None)
        assert srv.stop()[0] == 0
    with shoal.open(tmp_path / "data") as store:  # --es-index-field: the index under that name
        assert [orjson.loads(r.raw) for r in store.scan("`true`", order="oldest", limit=2)] == \
            [{"tag": "auth", "i": 0}, {"tag": "auth", "i": 1}]


# ---- the protocol by hand ----

def _bulk(client: httpx.Client, body: bytes, path: str = "/_bulk", **headers) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/x-ndjson", **headers})


@pytest.fixture
def http(store, es_url):
    with httpx.Client(base_url=es_url, timeout=30) as c:
        yield c


def _es_error(resp: httpx.Response, status: int, type_: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["x-elastic-product"] == "Elasticsearch"
    body = resp.json()
    assert body["status"] == status and body["error"]["type"] == type_
    assert body["error"]["root_cause"][0]["type"] == type_
    return body["error"]["reason"]


def test_whole_request_errors(store, http):
    assert "not JSON" in _es_error(_bulk(http, b'{"index": \n{"a":1}\n'), 400, "x_content_parse_exception")
    assert "found [upsert]" in _es_error(_bulk(http, b'{"upsert": {"_index": "a"}}\n{}\n'), 400,
                                         "illegal_argument_exception")
    assert "no source line" in _es_error(_bulk(http, b'{"index": {"_index": "a"}}\n'), 400,
                                         "illegal_argument_exception")
    assert "index is missing" in _es_error(_bulk(http, b'{"index": {}}\n{"a": 1}\n'), 400,
                                           "action_request_validation_exception")
    assert "no requests" in _es_error(_bulk(http, b"\n \n"), 400, "action_request_validation_exception")
    assert "Invalid index name" in _es_error(_bulk(http, b'{"index": {}}\n{"a": 1}\n', "/A/_bulk"), 400,
                                             "invalid_index_name_exception")
    assert _bulk(http, b"\x1f\x8b not gzip", **{"Content-Encoding": "gzip"}).status_code == 400
    assert _bulk(http, gzip.compress(b'{"index": {"_index": "a"}}\n{"a": 1}\n')[:-9],
                 **{"Content-Encoding": "gzip"}).status_code == 400
    assert stored(store) == {}  # a refused body stores nothing


def test_compatibility_headers_prefix_and_blank_lines(store, http):
    body = b'\n{"create": {}}\r\n{"a": 1}\r\n\n{"index": {"_index": "other", "routing": "r", "pipeline": "p"}}\n' \
           b'{"b": 2}\n'
    for ctype in ("application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                  "application/vnd.elasticsearch+x-ndjson; compatible-with=9"):
        r = http.post("/es/logs/_bulk?refresh=true&timeout=1m&wait_for_active_shards=1", content=body, headers={
            "Content-Type": ctype, "Accept": ctype.replace("x-ndjson", "json")})
        assert r.status_code == 200 and r.headers["x-elastic-product"] == "Elasticsearch"
        assert [list(i.values())[0]["_index"] for i in r.json()["items"]] == ["logs", "other"]
        assert r.json()["errors"] is False
    assert list(stored(store).values()) == [b'{"_index":"logs","a": 1}', b'{"_index":"other","b": 2}'] * 2
    assert http.head("/es/").status_code == 200
    assert http.get("/es/_cluster/health").json()["status"] == "green"
    r = http.put("/_bulk", content=b'{"index": {"_index": "p"}}\n{"c": 3}\n')
    assert r.status_code == 200 and r.json()["items"][0]["index"]["status"] == 201


def test_items_answer_in_order_against_the_oracle(store, http, records):
    """A body of many items, a tenth of them spoiled in every way an item can
    be, answered item by item: each good source stored, each bad one failed
    with its reason, in the order sent."""
    raws = mixed_sources(records, "generated", 3000, seed=11)
    rng = random.Random(2)
    lines, want = [], []
    for r in raws:
        index = rng.choice(["a", "b", "Bad!", "c"])
        if rng.random() < 0.05:
            lines += [orjson.dumps({"delete": {"_index": "a", "_id": "1"}})]
            want.append(("delete", 400, None))
            continue
        lines += [orjson.dumps({"index": {"_index": index}}), r]
        ok = index != "Bad!" and expect_ok(r)
        want.append(("index", 201 if ok else 400, with_index(r, index) if ok else None))
    r = _bulk(http, b"\n".join(lines) + b"\n")
    assert r.status_code == 200
    items = r.json()["items"]
    assert r.json()["errors"] is True
    assert [(list(i)[0], list(i.values())[0]["status"]) for i in items] == [(op, s) for op, s, _ in want]
    got = stored(store)
    assert list(got.values()) == [w for _, _, w in want if w is not None]
    for i, (_, _, w) in zip(items, want):
        if w is not None:
            assert got[int(i["index"]["_id"])] == w


def test_items_per_request_are_bounded(store, http, monkeypatch):
    from shoal.api import bulk
    monkeypatch.setattr(bulk, "MAX_ITEMS", 50)
    pair = b'{"index": {"_index": "a"}}\n{"a": 1}\n'
    assert _bulk(http, pair * 50).status_code == 200
    assert "more than 50 items" in _es_error(_bulk(http, pair * 51), 413, "illegal_argument_exception")
    assert len(stored(store)) == 50  # the refused body stored nothing


def test_body_limits(open_store, live_url_for):
    store = open_store()
    url = live_url_for(create_app(store, max_body_bytes=4096))
    with httpx.Client(base_url=url) as http:
        small = b'{"index": {"_index": "a"}}\n{"a": 1}\n'
        assert _bulk(http, small).status_code == 200
        assert "limit of 4096" in _es_error(_bulk(http, small * 200), 413, "content_too_long_exception")
        assert "gunzips to more" in _es_error(_bulk(http, gzip.compress(small * 2000),
                                                    **{"Content-Encoding": "gzip"}), 413,
                                              "content_too_long_exception")
    assert len(stored(store)) == 1


@pytest.mark.parametrize("index_field", ["_index", None])
@pytest.mark.parametrize("source", ["generated", "real"])
def test_whole_body_path_answers_as_item_by_item(open_store, tmp_path, records, source, index_field):
    """The common body (repeated index/create lines, sources opening with
    '{"') is stored by whole-body operations (Bulk._runs): its answers and
    records equal the item-by-item path's on a twin store, rejected
    records (cut short: they still open with '{"') and their reasons
    included, across runs of several indexes and _ids."""
    raws = list(records(source, "github_events", 2400))
    rng = random.Random(8)
    lines, cut = [], 0
    for k in range(0, len(raws), 300):
        action = rng.choice([{"index": {"_index": "a"}}, {"create": {"_index": "b"}},
                             {"index": {"_index": "c", "_id": "fixed"}}, {"index": {}}])
        for r in raws[k:k + 300]:
            if rng.random() < 0.05 or not cut:
                text = r.decode()
                r = text[:len(text) // 2].encode()
                cut += 1
            lines += [orjson.dumps(action), r]
    body = b"\n".join(lines) + b"\n"
    fast_store, slow_store = open_store(tmp_path / "fast"), open_store(tmp_path / "slow")
    fast = Bulk(fast_store, index="dflt", index_field=index_field)
    took_runs = fast._runs(body, body.split(b"\n")[:-1])
    fast._flush()
    slow = Bulk(slow_store, index="dflt", index_field=index_field)
    slow._items(body.split(b"\n")[:-1])
    slow._flush()
    assert took_runs
    assert orjson.loads(orjson.dumps(fast.items)) == orjson.loads(orjson.dumps(slow.items))
    assert sum(1 for i in fast.items if list(orjson.loads(orjson.dumps(i)).values())[0]["status"] == 400) == cut
    assert stored(fast_store) == stored(slow_store)
    assert (fast.ingested, fast.rejected) == (slow.ingested, slow.rejected)
