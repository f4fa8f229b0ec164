"""Disk full over HTTP: 507 disk_full from the one error table, for a
durable ingest and a checkpoint; queries keep answering; the client raises
shoal.DiskFull; after the fault clears the same requests succeed."""
from __future__ import annotations

import asyncio

import pytest

import shoal
from shoal import client as shoal_client

from .conftest import assert_error, lines

pytestmark = pytest.mark.anyio

BODY = b"".join(b'{"_path":"dns","n":%d}\n' % i for i in range(200))


async def test_507_when_the_disk_is_full(client, faulty_disk):
    await client.post("/psfs", json={"name": "path", "expr": "_path"})
    r = await client.post("/records", content=BODY, params={"durable": "true"})
    assert r.status_code == 200 and r.json()["durable"] is True
    faulty_disk.fail("pwrite", after_bytes=0)
    body = assert_error(await client.post("/records", content=BODY, params={"durable": "true"}), 507, "disk_full")
    assert "no space left on device" in body["detail"] and "segment-" in body["detail"]
    faulty_disk.fail("write", where="ckpt-")
    assert_error(await client.post("/checkpoints"), 507, "disk_full")
    r = await client.post("/query", json={"psf": "path", "value": "dns", "limit": 500})
    assert r.status_code == 200 and len(lines(r.content)) == 400  # what was stored, durable or not
    faulty_disk.heal()
    assert (await client.post("/records", content=BODY, params={"durable": "true"})).status_code == 200
    assert (await client.post("/checkpoints")).status_code == 200


async def test_durable_requests_do_not_block_the_event_loop(client, faulty_disk):
    """While durable ingests wait for a slow fsync, other requests answer."""
    faulty_disk.fsync_delay_s = 0.2
    ingests = [asyncio.ensure_future(client.post("/records", content=BODY, params={"durable": "true"}))
               for _ in range(4)]
    await asyncio.sleep(0.05)
    health = await asyncio.wait_for(client.get("/healthz"), 0.15)  # well inside one fsync
    assert health.status_code == 200
    results = await asyncio.gather(*ingests)
    assert all(r.status_code == 200 and r.json()["durable"] for r in results)


def test_the_client_raises_disk_full():
    exc = shoal_client._ERRORS["disk_full"]({"detail": "write to x failed: no space left on device"})
    assert isinstance(exc, shoal.DiskFull) and isinstance(exc, shoal.NativeIOError)
