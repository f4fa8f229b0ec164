"""What bearer tokens cost a request: the same server with and without them.

    .venv/bin/python benchmarks/access.py [--quick] [--runs 5] [--requests 300]

Starts two `python -m shoal.api.server` processes over two copies of the
same store (generated GitHub-like events, PSF `type`): one open, one with a
write token and a read token. In rounds (each round runs every row on both
servers, alternating which goes first), one keep-alive client sends:
  stats      GET /stats                       (read token)
  query      POST /query type=PushEvent, limit 10 (read token)
  ingest     POST /records of 1,000 events    (write token)
  refused    POST /records with no token: the 401, answered from the headers
Figures are medians of per-request latency; "tokens / open" is the median
over rounds of the per-round ratio of medians (1.00 = no cost). The token
check itself (SHA-256 + compare_digest against every token) is also timed
in this process, per call.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (arg_parser, events_file, paired_ratio, summary, table, target, target_table,  # noqa: E402
                     write_result)
from http_ingest import Server  # noqa: E402

import shoal  # noqa: E402

WRITE = "w" * 64
READ = "r" * 64


def _store(path: Path, data: bytes) -> None:
    with shoal.open(path) as s:
        s.register_psf("type", "type")
        s.ingest(data)
        s.checkpoint()


def _latencies(url: str, kind: str, n: int, body: bytes, token: str | None) -> list[float]:
    import httpx
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    out = []
    with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
        c.get("/healthz")
        for _ in range(n):
            t0 = time.perf_counter()
            if kind == "stats":
                r = c.get("/stats")
            elif kind == "query":
                r = c.post("/query", json={"psf": "type", "value": "PushEvent", "limit": 10})
            elif kind == "ingest":
                r = c.post("/records", content=body, headers={"Content-Type": "application/x-ndjson"})
            else:  # refused: no token
                r = c.post("/records", content=body, headers={"Content-Type": "application/x-ndjson",
                                                              "Authorization": ""})
            r.read()
            out.append(time.perf_counter() - t0)
            want = 401 if kind == "refused" else 200
            assert r.status_code == want or (kind == "refused" and token is None and r.status_code == 200), r.text
    return out


def main() -> None:
    ap = arg_parser(__doc__)
    ap.add_argument("--requests", type=int, default=300, help="requests per row per round")
    args = ap.parse_args()
    n_events = 2_000 if args.quick else 20_000
    requests = 20 if args.quick else args.requests
    ingests = max(5, requests // 10)
    data = events_file(n_events).read_bytes()
    body = b"".join(data.splitlines(keepends=True)[:1000])

    from shoal.api.auth import Tokens, _Digests
    digests = _Digests(Tokens.of([WRITE], [READ]))
    t0 = time.perf_counter()
    for _ in range(100_000):
        digests.role_of(READ.encode())
    check_us = (time.perf_counter() - t0) / 100_000 * 1e6

    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"open": Path(tmp) / "open", "tokens": Path(tmp) / "tokens"}
        for d in dirs.values():
            _store(d, data)
        servers = {"open": Server(dirs["open"]), "tokens": Server(dirs["tokens"], extra=["--token", WRITE,
                                                                                       "--read-token", READ])}
        kinds = {"stats": (requests, READ), "query": (requests, READ), "ingest": (ingests, WRITE),
                 "refused": (requests, None)}
        med: dict[tuple[str, str], list[float]] = {(k, s): [] for k in kinds for s in servers}
        try:
            for rnd in range(args.runs):
                order = list(servers) if rnd % 2 == 0 else list(reversed(servers))
                for kind, (n, token) in kinds.items():
                    for name in order:
                        if kind == "refused" and name == "open":
                            continue
                        lat = _latencies(servers[name].url, kind, n, body,
                                         token if name == "tokens" else None)
                        med[(kind, name)].append(statistics.median(lat))
        finally:
            for s in servers.values():
                s.stop()

    rows, result = [], {"token_check_us": check_us, "rows": {}}
    for kind in kinds:
        tok = med[(kind, "tokens")]
        opened = med[(kind, "open")]
        ratio = paired_ratio(tok, opened)["median"] if opened else None
        rows.append([kind, f"{statistics.median(opened) * 1e3:.3f}" if opened else "-",
                     f"{statistics.median(tok) * 1e3:.3f}", f"{ratio:.2f}" if ratio else "-"])
        result["rows"][kind] = {"open_ms": summary([x * 1e3 for x in opened]) if opened else None,
                                "tokens_ms": summary([x * 1e3 for x in tok]), "ratio": ratio}
    print(f"{n_events:,} generated events; {args.runs} rounds; {requests} requests per row per round "
          f"({ingests} for ingest, 1,000 events per body); medians of per-request latency")
    print(table(rows, ["request", "open ms", "tokens ms", "tokens / open"]))
    print(f"token check in process: {check_us:.2f} us per request")
    targets = [target(f"{kind} latency with tokens vs open", "<= 1.10x", result["rows"][kind]["ratio"], 1.10,
                      unit="x", higher_is_better=False) for kind in ("stats", "query", "ingest")]
    print(target_table(targets))
    result["targets"] = targets
    write_result("access", result, args.out)


if __name__ == "__main__":
    main()
