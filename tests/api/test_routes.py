"""Routes one by one through ASGITransport: ingest in every format and
mode, the PSF lifecycle, records by address, checkpoints, compaction, stats,
health and metrics."""
from __future__ import annotations

import gzip
import json

import pytest
from urllib.parse import quote
from conftest import SOURCES
from oracle import ALL, Log, as_pairs

from shoal.config import KiB

from .conftest import assert_error, lines, pairs

pytestmark = pytest.mark.anyio

NDJSON = {"Content-Type": "application/x-ndjson"}
RECS = b'{"type":"PushEvent","n":1}\n{"type":"WatchEvent","n":2}\n{"type":"PushEvent","n":3}\n'


async def ingest(client, body, headers=NDJSON, **params):
    return await client.post("/records", content=body, headers=headers, params=params)


# ---- ingest ----

async def test_ingest_ndjson_reports_addresses(client, store):
    r = await ingest(client, RECS)
    assert r.status_code == 200
    out = r.json()
    assert (out["ingested"], out["rejected"], out["errors"], out["errors_total"]) == (3, 0, [], 0)
    got = as_pairs(store.scan(ALL, order="oldest"))
    assert [raw for _, raw in got] == RECS.splitlines()
    assert (out["first_address"], out["last_address"]) == (got[0][0], got[-1][0])
    assert out["input_bytes"] == sum(len(x) for x in RECS.splitlines()) and out["durable"] is False


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", ["github_events", "statuses", "zeek_logs"])
async def test_ingest_as_ndjson_gzip_and_array(client, store, records, source, kind):
    recs = records(source, kind, {"github_events": 300, "statuses": 100, "zeek_logs": 3000}[kind])
    ndjson = b"\n".join(recs) + b"\n"
    r = await ingest(client, ndjson)
    assert r.json()["ingested"] == len(recs)
    # gzip with the header, gzip without it, and a JSON array (application/json)
    r = await ingest(client, gzip.compress(ndjson), {**NDJSON, "Content-Encoding": "gzip"})
    assert r.json()["ingested"] == len(recs)
    r = await ingest(client, gzip.compress(ndjson), {})
    assert r.json()["ingested"] == len(recs)
    r = await ingest(client, b"[\n" + b",\n".join(recs) + b"\n]", {"Content-Type": "application/json"})
    assert r.json()["ingested"] == len(recs)
    log = Log(recs * 4)
    log.bind(store)


async def test_ingest_in_many_small_chunks(client, store, generated):
    recs = generated("github_events", 30)
    body = b"\n".join(recs) + b"\n"

    async def trickle():
        for i in range(0, len(body), 777):
            yield body[i:i + 777]

    r = await client.post("/records", content=trickle(), headers=NDJSON)
    assert r.json()["ingested"] == len(recs)
    Log(recs).bind(store)


async def test_format_parameter_overrides_content_type(client, store):
    doc = b'{\n  "a": [1, 2]\n}'
    r = await ingest(client, doc, NDJSON, format="json")
    assert r.json()["ingested"] == 1
    r = await ingest(client, b'[{"a":1},{"a":2}]', NDJSON, format="array")
    assert r.json()["ingested"] == 2
    assert_error(await ingest(client, b"{}", NDJSON, format="xml"), 422, "validation_error")


async def test_skip_lists_bad_records_capped_at_100(client, store):
    body = b"".join(b'{"n":%d}\n' % i if i % 2 else b"{bad\n" for i in range(400))
    r = await ingest(client, body)
    out = r.json()
    assert r.status_code == 200
    assert (out["ingested"], out["rejected"], out["errors_total"]) == (200, 200, 200)
    assert len(out["errors"]) == 100
    assert out["errors"][0]["line"] == 1 and out["errors"][1]["line"] == 3
    assert set(out["errors"][0]) == {"line", "error", "offset"}


async def test_reject_stores_nothing_and_answers_422(client, store):
    r = await ingest(client, RECS + b"{oops}\n" + RECS, on_error="reject")
    body = assert_error(r, 422, "ingest_rejected")
    assert (body["rejected"], body["errors_total"], body["errors"][0]["line"]) == (1, 1, 4)
    assert list(store.scan(ALL)) == []
    r = await ingest(client, RECS, on_error="reject", durable="true")
    assert r.json()["ingested"] == 3 and r.json()["durable"] is True


@pytest.mark.parametrize("data", [b"", b"\n \n\t", b"\r\n"])
async def test_empty_body_is_400(client, store, data):
    """`curl --data-binary @missing-file` sends an empty body: that is not a
    success a client may miss."""
    body = assert_error(await ingest(client, data), 400, "empty_body")
    assert (body["ingested"], body["rejected"]) == (0, 0)
    assert store.stats()["records"] == 0


async def test_all_bad_body_is_422_with_the_errors(client, store):
    body = assert_error(await ingest(client, b"nope\n{\n[1,\n"), 422, "no_valid_records")
    assert (body["ingested"], body["rejected"], body["errors_total"]) == (0, 3, 3)
    assert [e["line"] for e in body["errors"]] == [1, 2, 3]
    assert list(store.scan(ALL)) == [] and store.stats()["records"] == 0
    # one good record among them: a 200 that lists the bad ones
    r = await ingest(client, b'nope\n{"a":1}\n')
    assert r.status_code == 200 and (r.json()["ingested"], r.json()["rejected"]) == (1, 1)


# ---- PSFs ----

async def test_psf_lifecycle(client, store):
    r = await client.post("/psfs", json={"name": "type", "expr": "type"})
    assert r.status_code == 201
    p = r.json()
    assert (p["name"], p["expr"], p["kind"], p["active"], p["native"]) == ("type", "type", "projection", True, True)
    assert p["active_from"] == store.tail_address and p["ranges"] == [[p["active_from"], None]]
    r = await client.post("/psfs", json={"name": "push", "expr": "type == 'PushEvent'"})
    assert r.json()["kind"] == "predicate"
    await ingest(client, RECS)
    assert [x["name"] for x in (await client.get("/psfs")).json()["psfs"]] == ["type", "push"]
    assert (await client.get("/psfs/push")).json()["id"] == r.json()["id"]

    r = await client.delete("/psfs/type")
    assert r.status_code == 200
    gone = r.json()
    assert gone["active"] is False and gone["active_from"] is None
    assert gone["range"] == [p["active_from"], store.tail_address] == gone["ranges"][-1]
    assert_error(await client.delete("/psfs/type"), 404, "psf_not_found")
    # still listed (inactive), and queries still answer completely
    assert (await client.get("/psfs/type")).json()["active"] is False
    r = await client.get("/psfs/type/records", params={"value": "PushEvent"})
    assert len(lines(r.content)) == 2
    # re-registering resumes the same id, with a second range
    await ingest(client, RECS)
    r = await client.post("/psfs", json={"name": "type", "expr": "type"})
    assert r.json()["id"] == p["id"] and len(r.json()["ranges"]) == 2


async def test_psf_exist_ok_and_replace(client, store):
    """exist_ok: the same expression answers 200 with the PSF as it is (the
    registry unchanged); replace: 201, the old one retired at the tail."""
    first = await client.post("/psfs", json={"name": "t", "expr": "type", "exist_ok": True})
    assert first.status_code == 201
    await client.post("/records", content=b'{"type":"A"}\n')
    again = await client.post("/psfs", json={"name": "t", "expr": "type", "exist_ok": True})
    assert (again.status_code, again.json()) == (200, first.json())
    assert [(p.id, p.ranges) for p in store.psfs()] == [(first.json()["id"], [(64, None)])]
    body = assert_error(await client.post("/psfs", json={"name": "t", "expr": "n", "exist_ok": True}), 409,
                        "psf_exists")
    assert (body["name"], body["definition"]) == ("t", "type") and "deregister it first" in body["detail"]
    same = await client.post("/psfs", json={"name": "t", "expr": "type", "replace": True})
    assert (same.status_code, same.json()) == (200, first.json())
    tail = store.tail_address
    r = await client.post("/psfs", json={"name": "t", "expr": "n", "replace": True})
    assert r.status_code == 201 and r.json()["id"] != first.json()["id"] and r.json()["ranges"] == [[tail, None]]
    assert [(p.definition, p.ranges) for p in store.psfs()] == [("n", [(tail, None)])]
    assert [(p.definition, p.ranges) for p in store._registry.retired()] == [("type", [(64, tail)])]
    assert_error(await client.post("/psfs", json={"name": "t", "expr": "n"}), 409, "psf_exists")


async def test_psf_names_with_slashes_and_reserved_characters(client, store):
    """Names are percent-encoded in paths; "/" in a name works in
    GET/DELETE /psfs/{name} and GET /psfs/{name}/records, and a name ending
    in "/records" does not shadow the query of its prefix."""
    names = {"repo/name": "repo.name", "a?b#c%d": "type", "repo": "repo.name"}
    for name, expr in names.items():
        assert (await client.post("/psfs", json={"name": name, "expr": expr})).status_code == 201
    recs = b"".join(b'{"type":"T%d","repo":{"name":"org/r%d"}}\n' % (i % 3, i % 4) for i in range(20))
    await ingest(client, recs)
    oracle = {}
    for raw in recs.splitlines():
        oracle.setdefault(json.loads(raw)["repo"]["name"], []).append(raw)
    for name, expr in names.items():
        path = "/psfs/" + quote(name, safe="")
        assert (await client.get(path)).json()["name"] == name
    for value, raws in oracle.items():
        r = await client.get("/psfs/" + quote("repo/name", safe="") + "/records", params={"value": value})
        assert sorted(lines(r.content)) == sorted(raws)
    assert (await client.post("/psfs", json={"name": "repo/records", "expr": "type"})).status_code == 201
    r = await client.get("/psfs/repo/records", params={"value": next(iter(oracle))})
    assert r.status_code == 200 and lines(r.content)  # the query of "repo", not the PSF "repo/records"
    r = await client.delete("/psfs/" + quote("a?b#c%d", safe=""))
    assert r.status_code == 200 and r.json()["name"] == "a?b#c%d"
    assert store.psf("a?b#c%d").active is False


async def test_deregistering_a_psf_no_record_reached(client, store):
    """Registered and deregistered with nothing ingested between: the
    closed range is reported empty (it was a 500: `ranges` drops it)."""
    first = (await client.post("/psfs", json={"name": "t", "expr": "type"})).json()["active_from"]
    r = await client.delete("/psfs/t")
    assert r.status_code == 200 and r.json()["range"] == [first, first] and r.json()["ranges"] == []
    await ingest(client, RECS)
    again = (await client.post("/psfs", json={"name": "t", "expr": "type"})).json()["active_from"]
    await ingest(client, RECS)
    r = await client.delete("/psfs/t")
    assert r.json()["range"] == [again, store.tail_address] == r.json()["ranges"][-1]
    # registered again where it stopped: the registry reopens that range
    assert (await client.post("/psfs", json={"name": "t", "expr": "type"})).json()["active_from"] == again
    r = await client.delete("/psfs/t")
    assert r.json()["range"] == [again, store.tail_address] and r.json()["ranges"] == [r.json()["range"]]


async def test_psf_errors(client):
    await client.post("/psfs", json={"name": "type", "expr": "type"})
    assert_error(await client.post("/psfs", json={"name": "type", "expr": "n"}), 409, "psf_exists")
    body = assert_error(await client.post("/psfs", json={"name": "bad", "expr": "a.["}), 422,
                        "psf_definition_error")
    assert body["position"] == 3 and body["expression"] == "a.["
    body = assert_error(await client.post("/psfs", json={"name": "f", "expr": "nope(a)"}), 422,
                        "psf_definition_error")
    assert_error(await client.post("/psfs", json={"name": "x"}), 422, "validation_error")
    assert_error(await client.post("/psfs", json={"name": "", "expr": "a"}), 422, "validation_error")
    body = assert_error(await client.post("/psfs", json={"name": "a\x01", "expr": "a"}), 422, "validation_error")
    assert "1 to 128 characters" in body["detail"]  # the rule (psf/registry.py check_name)
    assert_error(await client.post("/psfs", json={"name": "x", "expr": "a", "more": 1}), 422,
                 "validation_error")
    assert_error(await client.post("/psfs", content=b"{not json", headers={"Content-Type": "application/json"}),
                 422, "validation_error")
    assert_error(await client.get("/psfs/nope"), 404, "psf_not_found")


# ---- records by address ----

async def test_get_record_returns_the_raw_bytes(client):
    raw = b'{"b":  "\\u00e9t\xc3\xa9", "a":1.50}'
    out = (await ingest(client, raw + b"\n")).json()
    r = await client.get(f"/records/{out['first_address']}")
    assert r.status_code == 200 and r.content == raw
    assert r.headers["content-type"] == "application/json"
    body = assert_error(await client.get(f"/records/{out['first_address'] + 8}"), 404, "record_not_found")
    assert body["address"] == out["first_address"] + 8
    assert_error(await client.get("/records/123456789"), 404, "record_not_found")
    assert_error(await client.get("/records/-1"), 422, "validation_error")
    for past_any_log in (2**64 - 1, 2**64, 10**40):  # no record there (was a 500: OverflowError)
        body = assert_error(await client.get(f"/records/{past_any_log}"), 404, "record_not_found")
        assert body["address"] == past_any_log
    assert_error(await client.get("/records/abc"), 422, "validation_error")


# ---- checkpoints, compaction, stats, health, metrics ----

async def test_checkpoints(client, store):
    assert (await client.get("/checkpoints")).json() == {"checkpoints": [], "latest": None}
    await ingest(client, RECS)
    r = await client.post("/checkpoints")
    c = r.json()
    assert r.status_code == 200 and c["checkpoint_id"] == 1 and c["tail_address"] == store.tail_address
    assert c["records"] == 3 and c["duration_ms"] >= 0
    assert (await client.get("/checkpoints")).json() == {"checkpoints": [1], "latest": 1}


async def test_compact(client, store, generated):
    recs = generated("zeek_logs", 3000)
    await ingest(client, b"\n".join(recs))
    log = Log(recs)
    log.bind(store)
    r = await client.post("/compact", json={"retain_bytes": 64 * 1024})
    assert r.status_code == 200, r.text
    out = r.json()
    page = store.config.page_size_bytes
    cut = min(store.tail_address - 64 * 1024, store.read_only_address) // page * page
    assert out["begin_before"] == 64 and out["begin_after"] == cut == store.begin_address
    kept = [i for i, a in enumerate(log.addresses) if a >= cut]
    assert out["records_dropped"] == len(recs) - len(kept) and out["records_copied"] == 0
    assert out["segments_deleted"] == cut // store.config.segment_size_bytes
    assert out["bytes_reclaimed"] == out["disk_bytes_before"] - out["disk_bytes_after"] > 0
    assert out["disk_bytes_after"] == store.stats()["disk_bytes"]
    assert out["duration_ms"] >= 0
    body = (await client.post("/scan", json={"expr": ALL}, params={"with_address": "true"})).content
    assert pairs(body) == log.answer(kept)
    s = (await client.get("/stats")).json()
    assert s["records"] == len(kept) and s["addresses"]["begin"] == cut
    assert s["compaction"]["runs"] == 1 and s["compaction"]["last"]["begin_after"] == cut
    r = await client.post("/compact", json={"until_address": 0})  # below begin: nothing to do
    assert r.status_code == 200 and r.json()["begin_after"] == r.json()["begin_before"] == cut


async def test_stats_and_health(client, store):
    await client.post("/psfs", json={"name": "type", "expr": "type"})
    await ingest(client, RECS)
    s = (await client.get("/stats")).json()
    assert s["records"] == 3 and s["addresses"]["tail"] == store.tail_address
    assert s["psfs"][0]["name"] == "type" and s["ingest"]["records"] == 3
    assert s["http_ingest"]["records"] == 3
    assert {"memory_bytes", "disk_bytes", "log_bytes", "index", "recovery"} <= set(s)
    assert (await client.get("/healthz")).json() == {"status": "ok", "tail_address": store.tail_address}
    r = await client.get("/cluster")  # served by shoal cluster serve only
    assert r.status_code == 404 and r.json()["error"] == "not_a_cluster"


async def test_metrics(client, store):
    await client.post("/psfs", json={"name": "type", "expr": "type"})
    await ingest(client, RECS)
    await client.post("/query", json={"psf": "type", "value": "PushEvent"})
    await client.post("/scan", json={"expr": "n > `1`"})
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    samples = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["shoal_http_ingest_records_total"] == 3
    assert samples['shoal_queries_total{kind="one"}'] == 1
    assert samples['shoal_query_records_total{kind="one"}'] == 2
    assert samples['shoal_query_records_total{kind="scan"}'] == 2
    assert samples['shoal_query_duration_seconds_count{kind="one"}'] == 1
    assert samples['shoal_query_duration_seconds_bucket{kind="one",le="+Inf"}'] == 1
    assert samples['shoal_log_address{kind="tail"}'] == store.tail_address
    assert samples["shoal_records"] == 3
    assert samples["shoal_lost_and_found_bytes"] == 0  # nothing dropped (test_corruption fills it)
    assert samples['shoal_http_responses_total{method="POST",status="200"}'] >= 3
    # every sample belongs to a declared metric
    declared = {ln.split()[2] for ln in r.text.splitlines() if ln.startswith("# TYPE")}
    for name in samples:
        base = name.split("{")[0]
        assert base in declared or base.rsplit("_", 1)[0] in declared, name


async def test_query_answers_are_ndjson_of_raw_records(client, store):
    raw = [b'{"type":"PushEvent","x":"\\u0041"}', b'{"x":1.0,  "type":"PushEvent"}']
    await client.post("/psfs", json={"name": "type", "expr": "type"})
    await ingest(client, b"\n".join(raw) + b"\n")
    r = await client.post("/query", json={"psf": "type", "value": "PushEvent"})
    assert r.headers["content-type"] == "application/x-ndjson"
    assert lines(r.content) == raw[::-1]
    r = await client.post("/query", params={"with_address": "true"},
                          json={"psf": "type", "value": "PushEvent", "order": "oldest"})
    got = pairs(r.content)
    assert [x for _, x in got] == raw
    assert [json.loads(line)["record"] for line in lines(r.content)] == [json.loads(x) for x in raw]


async def test_records_with_line_breaks_stay_one_line(client, store):
    pretty = b'[\n  {\n    "type": "A",\n    "v": [1,\r\n 2]\n  },\n  {"type": "A"}\n]\n'
    r = await ingest(client, pretty, {"Content-Type": "application/json"})
    assert r.json()["ingested"] == 2
    body = (await client.post("/scan", json={"expr": "type == 'A'", "order": "oldest"})).content
    got = lines(body)
    assert [json.loads(x) for x in got] == [{"type": "A", "v": [1, 2]}, {"type": "A"}]
    # GET /records/{address} still returns the exact bytes
    first = r.json()["first_address"]
    assert (await client.get(f"/records/{first}")).content == b'{\n    "type": "A",\n    "v": [1,\r\n 2]\n  }'


# ---- damaged bodies: what was stored is counted and reported ----

def _numbered(n: int) -> bytes:
    return b"".join(b'{"n":%d,"pad":"%s"}\n' % (i, b"x" * (i % 90)) for i in range(n))


async def test_truncated_gzip_body_reports_and_counts_what_it_stored(client, store):
    data = _numbered(60_000)
    cut = gzip.compress(data)[: len(gzip.compress(data)) * 2 // 3]
    r = await client.post("/records", content=cut, headers={**NDJSON, "Content-Encoding": "gzip"})
    body = assert_error(r, 400, "parse_error")
    assert "truncated gzip" in body["detail"]
    found = sorted(store.scan(ALL), key=lambda rec: rec.address)
    assert 0 < body["ingested"] == len(found) == store.stats()["records"]
    assert body["last_address"] == found[-1].address and body["first_address"] == found[0].address
    assert [rec.raw for rec in found] == data.splitlines()[: len(found)]
    metrics = (await client.get("/metrics")).text
    assert f"shoal_http_ingest_records_total {len(found)}" in metrics


@pytest.mark.parametrize("doc", [b'{"a": {"b": [1, 2]}}', b'{\n  "a": {\n    "b": [1, 2]\n  }\n}\n', b'"x"'])
async def test_one_json_document_as_application_json_is_one_record(client, store, doc):
    r = await client.post("/records", content=doc, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and (r.json()["ingested"], r.json()["rejected"]) == (1, 0)
    assert [rec.raw for rec in store.scan(ALL)] == [doc.strip()]


async def test_application_json_array_body_malformed_at_the_array_level(client, store):
    r = await client.post("/records", content=b'[{"a":1},{"b":2}]]', headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["ingested"] == 2
    assert r.json()["errors"] == [{"line": 3, "error": "malformed JSON array", "offset": 17}]
    r = await client.post("/records?on_error=reject", content=b'[{"a":1},',
                          headers={"Content-Type": "application/json"})
    assert_error(r, 422, "ingest_rejected")
    assert store.stats()["records"] == 2


# ---- PSF limits ----

async def test_too_many_psfs_is_409_naming_the_limit(open_store):
    import httpx
    from shoal.api import create_app
    from shoal.client import _raise_for
    import shoal
    app = create_app(open_store(max_active_psfs=2, max_inactive_psfs=0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shoal") as client:
        for name in ("a", "b"):
            assert (await client.post("/psfs", json={"name": name, "expr": name})).status_code == 201
        r = await client.post("/psfs", json={"name": "c", "expr": "c"})
        body = assert_error(r, 409, "too_many_psfs")
        assert body["limit"] == 2 and "max_active_psfs=2" in body["detail"]
        with pytest.raises(shoal.TooManyPSFs) as info:
            _raise_for(r)
        assert info.value.limit == 2
        r = await client.delete("/psfs/a")
        assert r.status_code == 200 and r.json()["range"] == [64, 64]
        assert_error(await client.get("/psfs/a"), 404, "psf_not_found")  # max_inactive_psfs=0: forgotten
        assert (await client.post("/psfs", json={"name": "c", "expr": "c"})).status_code == 201


async def test_records_over_the_size_limit_name_it(client, store):
    limit = store.config.effective_max_record_bytes
    big = b'{"pad":"' + b"x" * limit + b'"}\n'
    body = assert_error(await ingest(client, big * 2), 413, "record_too_large")
    page = store.config.page_size_bytes
    assert (body["max_record_bytes"], body["page_size_bytes"]) == (limit, page) == (page - 32, 16 * KiB)
    detail = body["detail"]  # the limit, the page size it comes from, and how to raise it
    assert f"at most {limit:,} bytes" in detail and f"pages are 16 KiB (page_size_bytes={page})" in detail
    assert "fixed when a store is created" in detail and "--page-size" in detail, detail
    assert (body["ingested"], body["rejected"]) == (0, 2) and store.stats()["records"] == 0
    reason = f"record too large: {len(big) - 1:,} bytes, over the {limit:,} bytes that fit in one 16 KiB log page"
    assert [e["error"] for e in body["errors"]] == [reason, reason]
    r = await ingest(client, big + b'{"ok":1}\n')
    assert r.status_code == 200 and (r.json()["max_record_bytes"], r.json()["page_size_bytes"]) == (limit, page)
    assert (r.json()["ingested"], r.json()["errors"][0]["error"]) == (1, reason)
    r = await ingest(client, b'{"ok":1}\n')
    assert r.status_code == 200 and r.json().get("max_record_bytes") is None
    assert r.json().get("page_size_bytes") is None
