"""Query, conjunction, disjunction, the one-PSF GET form and scans over HTTP,
compared with tests/oracle.py on generated Zeek logs and GitHub events. PSFs are registered and
deregistered between ingests, so answers mix chain walks and scans."""
from __future__ import annotations

import pytest
from oracle import Log, sample_values

from .conftest import assert_error, pairs

pytestmark = pytest.mark.anyio

PSFS = {"path": "_path", "resp_p": '"id.resp_p"', "udp": "proto == 'udp'", "type": "type",
        "repo": "repo.name", "slow": "length(query) > `20`"}


@pytest.fixture
async def loaded(client, store, generated):
    """Zeek records in three parts and GitHub events, PSFs changing between
    the parts; returns the bound oracle Log."""
    zeek = generated("zeek_logs", 6000)
    gh = generated("github_events", 30)
    parts = [zeek[:2000], zeek[2000:4000] + gh, zeek[4000:]]

    async def put(recs):
        r = await client.post("/records", content=b"\n".join(recs) + b"\n",
                              headers={"Content-Type": "application/x-ndjson"})
        assert r.json()["ingested"] == len(recs)

    await client.post("/psfs", json={"name": "path", "expr": PSFS["path"]})
    await put(parts[0])
    for name in ("resp_p", "udp", "type", "repo", "slow"):
        assert (await client.post("/psfs", json={"name": name, "expr": PSFS[name]})).status_code == 201
    await put(parts[1])
    await client.delete("/psfs/path")
    await client.delete("/psfs/udp")
    await put(parts[2])
    log = Log(parts[0] + parts[1] + parts[2])
    log.bind(store)
    return log


async def post(client, path, body):
    r = await client.post(path, json={**body, "with_address": True})
    assert r.status_code == 200, r.text
    return pairs(r.content)


@pytest.mark.parametrize("path, body", [("/query", {"psf": "type", "value": "PushEvent", "limit": 9}),
                                        ("/scan", {"expr": "type == 'PushEvent'", "limit": 9})])
async def test_with_address_in_the_body_or_the_query_string(client, loaded, path, body):
    """with_address is a body field like limit and order; the query
    parameter still works, both ways at once must agree (else 400)."""
    expected = loaded.query("type", "PushEvent", limit=9)
    assert len(expected) == 9
    for params, extra in (({}, {"with_address": True}), ({"with_address": "true"}, {}),
                          ({"with_address": "true"}, {"with_address": True})):
        r = await client.post(path, json={**body, **extra}, params=params)
        assert r.status_code == 200 and pairs(r.content) == expected, (params, extra)
    raws = [raw + b"\n" for _, raw in expected]
    for params, extra in (({}, {}), ({}, {"with_address": False}), ({"with_address": "false"}, {}),
                          ({"with_address": "false"}, {"with_address": False})):
        r = await client.post(path, json={**body, **extra}, params=params)
        assert r.status_code == 200 and r.content == b"".join(raws), (params, extra)
    for params, extra in (({"with_address": "true"}, {"with_address": False}),
                          ({"with_address": "false"}, {"with_address": True})):
        err = assert_error(await client.post(path, json={**body, **extra}, params=params), 400,
                           "invalid_argument")
        assert "with_address" in err["detail"] and "give it once" in err["detail"]


@pytest.mark.parametrize("name", sorted(PSFS))
async def test_query_matches_the_oracle(client, loaded, name):
    for value in sample_values(loaded.value_counts(PSFS[name])):
        for kw in ({}, {"order": "oldest"}, {"limit": 7}):
            got = await post(client, "/query", {"psf": name, "value": value, **kw})
            assert got == loaded.query(PSFS[name], value, **kw), (name, value, kw)


async def test_address_ranges(client, loaded):
    a = loaded.addresses
    lo, hi = a[1500], a[4500]
    for kw in ({"from_address": lo}, {"to_address": hi}, {"from_address": lo, "to_address": hi, "order": "oldest"},
               {"from_address": hi, "to_address": lo}):
        got = await post(client, "/query", {"psf": "path", "value": "dns", **kw})
        assert got == loaded.query(PSFS["path"], "dns", **kw), kw
        got = await post(client, "/scan", {"expr": "_path == 'ssl'", **kw})
        assert got == loaded.scan("_path == 'ssl'", **kw), kw


async def test_all_and_any(client, loaded):
    conds = [("path", "dns"), ("resp_p", 53)]
    body = [{"psf": n, "value": v} for n, v in conds]
    oracle_conds = [(PSFS[n], v) for n, v in conds]
    want = loaded.query_all(oracle_conds)
    assert want and await post(client, "/query", {"all": body}) == want
    conds = [("path", "ssl"), ("udp", True), ("type", "PushEvent")]
    body = [{"psf": n, "value": v} for n, v in conds]
    oracle_conds = [(PSFS[n], v) for n, v in conds]
    assert await post(client, "/query", {"any": body, "limit": 50, "order": "oldest"}) == \
        loaded.query_any(oracle_conds, limit=50, order="oldest")
    # a condition's value defaults to true
    assert await post(client, "/query", {"any": [{"psf": "udp"}]}) == loaded.query(PSFS["udp"], True)


@pytest.mark.parametrize("text,value", [("dns", "dns"), ('"dns"', "dns"), ("53", 53), ("53.0", 53),
                                        ("true", True), ("null", None)])
async def test_get_form_parses_json_literals(client, loaded, text, value):
    name = "resp_p" if isinstance(value, int) else "udp" if value is True else "path"
    r = await client.get(f"/psfs/{name}/records", params={"value": text, "with_address": "true"})
    assert pairs(r.content) == loaded.query(PSFS[name], value)


async def test_get_form_defaults_to_true_and_takes_ranges(client, loaded):
    r = await client.get("/psfs/udp/records", params={"with_address": "true", "limit": 5, "order": "oldest"})
    assert pairs(r.content) == loaded.query(PSFS["udp"], True, limit=5, order="oldest")
    mid = loaded.addresses[3000]
    repo = sample_values(loaded.value_counts(PSFS["repo"]), 1)[0]  # the repo with the most events
    r = await client.get("/psfs/repo/records", params={"value": repo, "with_address": "true", "from_address": mid})
    got = pairs(r.content)
    assert len(got) >= 2 and got == loaded.query(PSFS["repo"], repo, from_address=mid)


@pytest.mark.parametrize("expr", ["\"id.resp_p\" > `1000`", "proto == 'tcp' && !(\"id.resp_p\" == `443`)",
                                  "length(answers || `[]`) > `1`", "type"])
async def test_scan_matches_the_oracle(client, loaded, expr):
    assert await post(client, "/scan", {"expr": expr}) == loaded.scan(expr)
    assert await post(client, "/scan", {"expr": expr, "limit": 3, "order": "oldest"}) == \
        loaded.scan(expr, limit=3, order="oldest")


async def test_requests_are_checked_before_the_stream_starts(client, loaded):
    assert_error(await client.post("/query", json={"psf": "nope", "value": 1}), 404, "psf_not_found")
    assert_error(await client.post("/query", json={"all": [{"psf": "path", "value": "dns"}, {"psf": "nope"}]}),
                 404, "psf_not_found")
    assert_error(await client.get("/psfs/nope/records"), 404, "psf_not_found")
    for bad in ({}, {"psf": "path", "all": [{"psf": "path"}]}, {"all": []}, {"any": [{"value": 1}]},
                {"psf": "path", "limit": -1}, {"psf": "path", "limit": "3"}, {"psf": "path", "order": "up"},
                {"psf": "path", "from_address": 1.5}, {"psf": "path", "extra": 1},
                {"all": [{"psf": "path"}], "value": 3}):
        assert_error(await client.post("/query", json=bad), 422, "validation_error")
    body = assert_error(await client.post("/scan", json={"expr": "a.["}), 422, "psf_definition_error")
    assert body["position"] == 3
    assert_error(await client.post("/scan", json={}), 422, "validation_error")
    assert_error(await client.get("/psfs/path/records", params={"order": "sideways"}), 422, "validation_error")
    assert_error(await client.get("/psfs/path/records", params={"limit": "x"}), 422, "validation_error")


async def test_no_match_is_an_empty_stream(client, loaded):
    r = await client.post("/query", json={"psf": "path", "value": "no-such-log"})
    assert r.status_code == 200 and r.content == b""
    r = await client.post("/query", json={"psf": "path", "value": {"an": "object"}})
    assert r.status_code == 200 and r.content == b""
