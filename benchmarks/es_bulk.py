"""Elasticsearch's bulk protocol into shoal vs shoal's own POST /records,
the same documents, in the same rounds.

    .venv/bin/python benchmarks/es_bulk.py [--quick] [--runs 3] [--records N]

Each round starts `python -m shoal.api.server` on a fresh data directory per
row and sends the same records, 500 per request (helpers.bulk's default
chunk), over one keep-alive connection:

  helpers.bulk (dicts)    elasticsearch.helpers.bulk of the records as
                          Python dicts: what a user's code sees, the
                          client's own JSON encoding included
  helpers.bulk (text)     the same with each source as its JSON text (the
                          client adds the action lines only)
  POST /_bulk (httpx)     the NDJSON bulk bodies made beforehand, POSTed
                          with httpx, each answer read with orjson: the
                          server's side of the protocol (an answer names
                          every item, ~160 bytes each; /records answers
                          with counts)
  POST /records (httpx)   the same records' NDJSON in the same bodies,
                          POSTed with httpx to shoal's own ingest: the
                          baseline

Cold: the first pass into the fresh store; warm: a second pass into the
same server. MB/s counts the records' JSON bytes (not action lines), so
rows compare directly; "x /records" is the median over rounds of this row's
rate over the baseline's in the same round and phase. Data: generated
GitHub-like events and, where ../shared/data is present, its real GitHub
events (30, replayed to the same count). Every row's records are checked stored (the server's count).
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import MB, arg_parser, events_file, real_file, replay, summary, table, write_result  # noqa: E402
from http_ingest import Server  # noqa: E402

import orjson  # noqa: E402

CHUNK = 500
INDEX = "events"


def _bulk_bodies(lines: list[bytes]) -> list[bytes]:
    action = orjson.dumps({"index": {"_index": INDEX}})
    return [b"".join(action + b"\n" + line + b"\n" for line in lines[i:i + CHUNK]) for i in range(0, len(lines), CHUNK)]


def _plain_bodies(lines: list[bytes]) -> list[bytes]:
    return [b"\n".join(lines[i:i + CHUNK]) + b"\n" for i in range(0, len(lines), CHUNK)]


def _post_all(url: str, path: str, bodies: list[bytes], ctype: str) -> float:
    import httpx
    with httpx.Client(base_url=url, timeout=600, headers={"Content-Type": ctype}) as c:
        c.get("/healthz")  # connected before the clock starts
        t0 = time.perf_counter()
        for body in bodies:
            r = c.post(path, content=body)
            assert r.status_code == 200, r.text[:300]
            answer = orjson.loads(r.content)  # read as a client must (orjson: the fastest it could)
            assert (not answer["errors"]) if path == "/_bulk" else not answer["rejected"], r.text[:300]
        return time.perf_counter() - t0


def _helpers(url: str, lines: list[bytes], as_dicts: bool) -> float:
    from elasticsearch import Elasticsearch, helpers
    client = Elasticsearch(url, request_timeout=600)
    client.info()  # connected (and the product checked) before the clock starts
    docs = [orjson.loads(line) for line in lines] if as_dicts else [line.decode() for line in lines]
    t0 = time.perf_counter()
    ok, errors = helpers.bulk(client, ({"_index": INDEX, "_source": d} for d in docs), chunk_size=CHUNK,
                              max_chunk_bytes=1 << 30)
    took = time.perf_counter() - t0
    assert ok == len(lines) and not errors
    return took


def _records(url: str) -> int:
    import httpx
    return httpx.get(url + "/stats").json()["records"]


def measure(lines: list[bytes], runs: int, tmp: Path) -> dict:
    bulk, plain = _bulk_bodies(lines), _plain_bodies(lines)
    rows = {
        "helpers.bulk (dicts)": lambda url: _helpers(url, lines, True),
        "helpers.bulk (text)": lambda url: _helpers(url, lines, False),
        "POST /_bulk (httpx)": lambda url: _post_all(url, "/_bulk", bulk, "application/x-ndjson"),
        "POST /records (httpx)": lambda url: _post_all(url, "/records", plain, "application/x-ndjson"),
    }
    out = {name: {"cold": [], "warm": []} for name in rows}
    names = list(rows)
    for r in range(runs):
        order = names[r % len(names):] + names[:r % len(names)]  # each row goes first in turn
        for name in order:
            data = tmp / f"{r}-{names.index(name)}"
            srv = Server(data)
            try:
                for phase in ("cold", "warm"):
                    out[name][phase].append(rows[name](srv.url))
                assert _records(srv.url) == 2 * len(lines), name
            finally:
                srv.stop()
                shutil.rmtree(data, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--records", type=int, default=0, help="records per data set (default 30,000; --quick 2,000)")
    args = ap.parse_args(argv)
    n = args.records or (2_000 if args.quick else 30_000)
    sets = {"generated": events_file(n).read_bytes().splitlines()[:n]}
    if real_file("ndjson", "github_events.ndjson.gz") is not None:  # 30 real events, replayed to n records
        sets["real github"] = replay("github_events.ndjson.gz", copies=-(-n // 30)).splitlines()[:n]
    tmp = Path(tempfile.mkdtemp(prefix="shoal-es-bulk-"))
    results: dict = {"records": n, "runs": args.runs, "chunk": CHUNK, "sets": {}}
    rows = []
    try:
        for label, lines in sets.items():
            size = sum(map(len, lines))
            print(f"{label}: {len(lines):,} records, {size / MB:,.1f} MB; {args.runs} rounds")
            res = measure(lines, args.runs, tmp)
            base = res["POST /records (httpx)"]
            out = {}
            for phase in ("cold", "warm"):
                for name, v in res.items():
                    rates = [size / MB / s for s in v[phase]]
                    ratios = sorted(b / s for s, b in zip(v[phase], base[phase]))
                    x = ratios[len(ratios) // 2]
                    out.setdefault(name, {})[phase] = {"seconds": summary(v[phase]), "mb_s": summary(rates),
                                                       "x_records": x}
                    rows.append([label, name, phase, f"{summary(rates)['median']:,.0f}", f"{x:.2f}"])
            results["sets"][label] = out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(rows, ["data", "how", "", "MB/s", "x /records"], "lllrr"))
    results["targets"] = []  # the issue asks for the figures and the ratio, and sets no bar
    path = write_result("es_bulk", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
