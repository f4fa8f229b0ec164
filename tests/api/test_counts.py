"""POST /count and POST /group_count, and shoal.Client.count/group_count over
a real server, against the oracle (orjson + jmespath) on generated Zeek logs
and GitHub events, with PSFs registered between ingests (so counts add
scans of ranges where a PSF was not active)."""
from __future__ import annotations

import pytest
from oracle import Log, python_value, sample_values, value_key

import shoal

from .conftest import assert_error
from .test_queries import PSFS, loaded  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


def _groups(log: Log, definition) -> dict:
    return {python_value(k): n for k, n in log.value_counts(definition).items()}


def _norm(pairs) -> dict:
    return {python_value(value_key(v)): n for v, n in pairs}


async def test_count_and_group_count_match_the_oracle(client, loaded):  # noqa: F811
    log = loaded
    for name in ("path", "resp_p", "type", "udp"):
        definition = PSFS[name]
        r = await client.post("/group_count", json={"psf": name})
        assert r.status_code == 200, r.text
        got = [(g["value"], g["count"]) for g in r.json()["groups"]]
        assert _norm(got) == _groups(log, definition)
        assert [n for _, n in got] == sorted((n for _, n in got), reverse=True)
        r = await client.post("/group_count", json={"psf": name, "limit": 2})
        assert [(g["value"], g["count"]) for g in r.json()["groups"]] == got[:2]
        for value in sample_values(log.value_counts(definition)) + ["nothing"]:
            r = await client.post("/count", json={"psf": name, "value": value})
            assert r.status_code == 200, r.text
            assert r.json() == {"count": len(log.query(definition, value))}
        mid = log.addresses[len(log.addresses) // 3]
        value = sample_values(log.value_counts(definition), 1)[0]
        r = await client.post("/count", json={"psf": name, "value": value, "from_address": mid})
        assert r.json()["count"] == len(log.query(definition, value, from_address=mid))
    conds = [{"psf": "path", "value": "dns"}, {"psf": "udp", "value": True}]
    oracle_conds = [(PSFS["path"], "dns"), (PSFS["udp"], True)]
    r = await client.post("/count", json={"all": conds})
    assert r.json()["count"] == len(log.query_all(oracle_conds))
    r = await client.post("/count", json={"any": conds})
    assert r.json()["count"] == len(log.query_any(oracle_conds))
    r = await client.post("/count", json={"any": conds, "limit": 3})
    assert r.json()["count"] == min(3, len(log.query_any(oracle_conds)))


async def test_count_errors(client, loaded):  # noqa: F811
    assert_error(await client.post("/count", json={"psf": "nope", "value": 1}), 404, "psf_not_found")
    assert_error(await client.post("/group_count", json={"psf": "nope"}), 404, "psf_not_found")
    assert_error(await client.post("/group_count", json={"psf": "path", "limit": -1}), 422, "validation_error")
    assert_error(await client.post("/group_count", json={"psf": "path", "bogus": 1}), 422, "validation_error")
    assert_error(await client.post("/count", json={}), 422, "validation_error")


def test_client_count_and_group_count(live_url, store, generated):
    raws = generated("github_events", 500)
    with shoal.Client(live_url) as c:
        c.register_psf("type", "type")
        c.ingest(b"\n".join(raws))
        log = Log(raws)
        log.bind(store)
        want = _groups(log, "type")
        assert dict(c.group_count("type")) == want
        assert c.group_count("type", limit=1) == [max(want.items(), key=lambda kv: kv[1])]
        for v, n in want.items():
            assert c.count("type", v) == n
        assert c.count_any([("type", "PushEvent"), ("type", "WatchEvent")]) == want.get("PushEvent", 0) + want.get(
            "WatchEvent", 0)
        assert c.count_all([("type", "PushEvent"), ("type", "WatchEvent")]) == 0
        with pytest.raises(shoal.PSFNotFound):
            c.count("nope")
