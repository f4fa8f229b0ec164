"""shoal.Client against a real uvicorn server (in a thread, on a free port):
the same answers as the library, raised as the library's exceptions."""
from __future__ import annotations

import gzip
import io
import sys

import pytest
from oracle import Log, as_pairs

import shoal


@pytest.fixture
def c(live_url):
    with shoal.Client(live_url, chunk_bytes=4096) as client:
        yield client


def test_import_shoal_does_not_import_httpx():
    import subprocess
    code = "import sys, shoal; assert 'httpx' not in sys.modules; shoal.Client; assert 'httpx' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# httpx made unimportable before shoal is imported: as None in sys.modules
# (what `pip uninstall` leaves looks like the second: no module of that name).
_NO_HTTPX = {
    "none": "sys.modules['httpx'] = None",
    "absent": "class _Absent:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name.split('.')[0] == 'httpx':\n"
              "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
              "sys.meta_path.insert(0, _Absent())",
}


@pytest.mark.parametrize("how", sorted(_NO_HTTPX))
def test_without_httpx_the_client_and_the_cli_give_the_install_hint(how):
    """shoal imports (also `from shoal import *`) without httpx; making a
    Client raises ModuleNotFoundError saying how to install it, and the
    CLI with --url prints that, not a traceback."""
    import subprocess
    code = "\n".join([
        "import contextlib, io, sys", _NO_HTTPX[how],
        "import shoal", "from shoal import *", "from shoal.cli import main",
        "try:", "    shoal.Client('http://127.0.0.1:1')",
        "except ModuleNotFoundError as exc:", "    print('client:', exc.name, exc)",
        "err = io.StringIO()",
        "with contextlib.redirect_stderr(err):", "    code = main(['stats', '--url', 'http://127.0.0.1:1'])",
        "print('cli:', code, err.getvalue().strip())",
    ])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    client, cli = r.stdout.splitlines()
    assert client.startswith("client: httpx shoal.Client needs httpx, which could not be imported (")
    assert client.endswith("); install it with: pip install 'shoal[client]'")
    assert cli.startswith("cli: 1 shoal: error: --url needs the HTTP client: shoal.Client needs httpx")
    assert cli.endswith("pip install 'shoal[client]'") and "Traceback" not in r.stderr


def test_ingest_every_kind_of_input(c, store, generated, tmp_path):
    recs = generated("github_events", 30)
    body = b"\n".join(recs) + b"\n"
    path = tmp_path / "github_events.ndjson.gz"  # a gzip path: sent compressed
    path.write_bytes(gzip.compress(body))
    results = [c.ingest(path), c.ingest(body), c.ingest(io.BytesIO(gzip.compress(body))),
               c.ingest(iter([body[:100], body[100:]])), c.ingest(str(path), durable=True)]
    assert [r.ingested for r in results] == [len(recs)] * 5
    assert isinstance(results[0], shoal.IngestResult) and results[-1].durable
    Log(recs * 5).bind(store)
    arr = c.ingest(b"[" + b",".join(recs[:3]) + b"]", format="array")
    assert arr.ingested == 3


def test_queries_match_the_library(c, store, generated):
    recs = generated("zeek_logs", 3000)
    c.register_psf("path", "_path")
    c.ingest(b"\n".join(recs))
    c.register_psf("udp", "proto == 'udp'")
    c.ingest(b"\n".join(recs))
    for got, want in [
        (c.query("path", "dns", limit=20), store.query("path", "dns", limit=20)),
        (c.query("udp", order="oldest"), store.query("udp", order="oldest")),
        (c.query_all([("path", "dns"), ("udp", True)]), store.query_all([("path", "dns"), ("udp", True)])),
        (c.query_any([("path", "ssl"), ("path", "weird")], from_address=store.tail_address // 2),
         store.query_any([("path", "ssl"), ("path", "weird")], from_address=store.tail_address // 2)),
        (c.scan("\"id.resp_p\" == `53`", limit=100), store.scan("\"id.resp_p\" == `53`", limit=100)),
    ]:
        g = list(got)
        assert all(isinstance(r, shoal.Record) for r in g)
        assert as_pairs(g) == as_pairs(want)
    r = next(iter(c.query("path", "dns")))
    assert c.get(r.address).raw == r.raw and r.json()["_path"] == "dns"
    assert c.get(r.address + 1) is None


def test_streams_can_stop_early(c, generated):
    c.register_psf("path", "_path")
    c.ingest(b"\n".join(generated("zeek_logs", 5000)))
    with c.query("path", "dns") as stream:
        first = [next(stream) for _ in range(3)]
    assert len(first) == 3
    assert len(list(c.query("path", "dns", limit=5))) == 5  # the connection pool is fine


def test_psfs(c, store):
    p = c.register_psf("path", "_path")
    assert isinstance(p, shoal.PSF) and p.active and p.native and p.kind is shoal.PSFKind.PROJECTION
    assert [x.name for x in c.psfs()] == ["path"] and c.psf("path").id == p.id
    c.ingest(b'{"_path":"dns"}\n')
    gone = c.deregister_psf("path")
    assert not gone.active and gone.ranges == [(p.ranges[0][0], store.tail_address)]
    for odd in ("repo/name", "a?b#c%d e"):  # quoted in the path
        c.register_psf(odd, "_path")
        assert c.psf(odd).name == odd
        assert c.deregister_psf(odd).name == odd and not store.psf(odd).active


def test_register_exist_ok_and_replace(c, store):
    p = c.register_psf("path", "_path", exist_ok=True)
    again = c.register_psf("path", "_path", exist_ok=True)
    assert (again.id, again.ranges) == (p.id, p.ranges) and len(store.psfs()) == 1
    with pytest.raises(shoal.PSFExists) as e:
        c.register_psf("path", "x", exist_ok=True)
    assert (e.value.name, e.value.definition) == ("path", "_path")
    c.ingest(b'{"_path":"dns"}\n')
    new = c.register_psf("path", "x", replace=True)
    assert new.id != p.id and new.ranges == [(store.tail_address, None)] and store.psf("path").definition == "x"


def test_errors_are_the_library_exceptions(c):
    c.register_psf("path", "_path")
    with pytest.raises(shoal.PSFExists) as e:
        c.register_psf("path", "x")
    assert e.value.status == 409 and e.value.code == "psf_exists"
    with pytest.raises(shoal.PSFDefinitionError) as e:
        c.register_psf("bad", "a.[")
    assert e.value.position == 3
    with pytest.raises(shoal.PSFNotFound):
        c.query("nope", 1)  # raised at the call, before iterating
    with pytest.raises(shoal.PSFNotFound):
        c.psf("nope")
    with pytest.raises(shoal.IngestRejected) as e:
        c.ingest(b'{"a":1}\n{bad\n', on_error="reject")
    assert e.value.result.rejected == 1 and e.value.result.errors[0].line == 2
    with pytest.raises(shoal.ParseError):
        c.ingest(gzip.compress(b'{"a":1}\n' * 100)[:-20])
    with pytest.raises(shoal.InvalidArgument):
        c.query("path", "dns", order="sideways")
    with pytest.raises(shoal.InvalidArgument):
        c.register_psf("f", lambda x: x)
    with pytest.raises(shoal.InvalidArgument):
        c._call("POST", "/compact", json={})  # 422 validation_error
    with pytest.raises(shoal.RemoteError) as e:
        c._call("GET", "/no-such-route")
    assert e.value.status == 404 and e.value.code == "not_found"


def test_compact(c, store, generated):
    c.ingest(b"\n".join(generated("zeek_logs", 2000)))
    begin, cut = store.begin_address, store.read_only_address // 2
    r = c.compact(cut)
    assert isinstance(r, shoal.CompactionResult) and r.begin_before == begin
    assert r.begin_after == store.begin_address == cut - cut % store.config.page_size_bytes
    assert r.records_dropped > 0 and r.segments_deleted > 0 and r.bytes_reclaimed > 0
    r = c.compact(retain_bytes=store.tail_address)  # keeps everything: nothing to do
    assert r.begin_after == r.begin_before == store.begin_address and r.bytes_reclaimed == 0
    with pytest.raises(shoal.InvalidArgument):
        c.compact()
    with pytest.raises(shoal.InvalidArgument):
        c.compact(1, retain_bytes=2)
    assert c.stats()["compaction"]["runs"] == 1


def test_checkpoint_and_stats(c, store):
    c.ingest(b'{"a":1}\n{"a":2}\n')
    info = c.checkpoint()
    assert isinstance(info, shoal.CheckpointInfo) and info.records == 2 and info.tail_address == store.tail_address
    assert c.checkpoints() == [info.checkpoint_id]
    assert c.stats()["records"] == 2 and c.health()["status"] == "ok"


def test_record_streams_split_anywhere():
    """The client's reader of {"address":..,"record":..} lines gives the
    same Records however the stream is cut into chunks, and names a bad line
    after the records before it."""
    import random

    import orjson

    from shoal.client import _stream_records
    rng = random.Random(3)
    pairs = [(64 + 8 * i, orjson.dumps({"i": i, "s": "x" * rng.randrange(0, 200)})) for i in range(400)]
    wire = b"".join(b'{"address":%d,"record":%s}\n' % p for p in pairs)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(wire)), rng.choice([1, 5, 50, 500])))
        chunks = [wire[a:b] for a, b in zip([0] + cuts, cuts + [len(wire)])]
        assert [(r.address, r.raw) for r in _stream_records(iter(chunks))] == pairs
    assert [(r.address, r.raw) for r in _stream_records([wire[:-1]])] == pairs  # no final newline
    got = []
    with pytest.raises(shoal.RemoteError, match="unexpected line"):
        for r in _stream_records([wire[:300], wire[300:] + b'{"address":1}\n' + wire]):
            got.append((r.address, r.raw))
    assert got == pairs


def test_ingest_that_stores_nothing_is_a_result_as_in_the_library(c, store):
    """The server answers 400/413/422 for a body that stored nothing; the
    client returns the same IngestResult the library would."""
    for data, rejected in [(b"", 0), (b"\n \n", 0), (b"nope\n{\n", 2),
                           (b'{"pad":"' + b"x" * store.config.effective_max_record_bytes + b'"}\n', 1)]:
        got = c.ingest(data)
        want = store.ingest(data)
        assert (got.ingested, got.rejected) == (want.ingested, want.rejected) == (0, rejected)
        assert [(e.line, e.reason) for e in got.errors] == [(e.line, e.reason) for e in want.errors]
    assert store.stats()["records"] == 0
