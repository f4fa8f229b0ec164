"""The live tail: latency from an ingest's acknowledgement to the record's
delivery, at a steady rate, through Store.follow and through GET /tail
(shoal.Client.tail against `shoal serve` on loopback).

A producer ingests generated events in batches at --rate records/s (100 ms
of records per batch), each record carrying its sequence number; a follower
on `type == 'PushEvent'` notes when each record arrives. Latency is the
arrival time minus the time its batch's ingest call returned. Reported:
p50, p99 and max per run, records delivered vs expected (none missed, none
twice), over --seconds of steady ingest.
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson
from _common import ROOT, arg_parser, events_file, percentile, summary, table, target, target_table, write_result

import shoal

sys.path.insert(0, str(ROOT / "tests"))


def produce(ingest, lines: list[bytes], rate: int, seconds: float, acked: dict) -> int:
    per = max(1, rate // 10)
    n = 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        batch = []
        for _ in range(per):
            o = orjson.loads(lines[i % len(lines)])
            o["seq"] = i
            batch.append(orjson.dumps(o))
            i += 1
        ingest(b"\n".join(batch))
        now = time.perf_counter()
        for k in range(i - per, i):
            acked[k] = now
        n += per
        next_at = t0 + n / rate
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return i


def run(label: str, follow, ingest, lines, rate, seconds, pushes) -> dict:
    acked: dict[int, float] = {}
    arrived: dict[int, float] = {}
    dupes = 0
    started = threading.Event()

    def follower():
        nonlocal dupes
        it = follow()
        started.set()
        for rec in it:
            seq = orjson.loads(rec.raw)["seq"]
            if seq in arrived:
                dupes += 1
            arrived[seq] = time.perf_counter()

    f = threading.Thread(target=follower, daemon=True)
    f.start()
    started.wait()
    time.sleep(0.2)
    sent = produce(ingest, lines, rate, seconds, acked)
    f.join(timeout=seconds + 10)
    want = {k for k in range(sent) if pushes[k % len(lines)]}
    lat = [max(0.0, arrived[k] - acked[k]) for k in want if k in arrived]
    missed = len(want - set(arrived))
    extra = len(set(arrived) - want)
    return {"label": label, "sent": sent, "expected": len(want), "delivered": len(arrived), "missed": missed,
            "extra": extra, "dupes": dupes, "p50": statistics.median(lat) if lat else 0,
            "p99": percentile(lat, 99) if lat else 0, "max": max(lat) if lat else 0}


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--rate", type=int, default=10_000, help="records/s ingested (default 10,000)")
    ap.add_argument("--seconds", type=float, default=0, help="steady ingest per run (default 10; --quick 2)")
    args = ap.parse_args(argv)
    seconds = args.seconds or (2 if args.quick else 10)
    lines = events_file(20_000).read_bytes().splitlines()
    pushes = [orjson.loads(line)["type"] == "PushEvent" for line in lines]
    results: dict = {"rate": args.rate, "seconds": seconds, "runs": args.runs}
    rows = []
    runs: dict[str, list] = {"library": [], "http": []}
    for _ in range(args.runs):
        tmp = Path(tempfile.mkdtemp(prefix="shoal-tail-"))
        try:
            with shoal.open(tmp / "lib") as store:
                store.register_psf("type", "type")
                runs["library"].append(run("library", lambda: store.follow([("type", "PushEvent")], timeout=2.0),
                                           store.ingest, lines, args.rate, seconds, pushes))
            from serverproc import ServerProcess
            srv = ServerProcess(tmp / "srv", module="shoal.cli")
            try:
                with shoal.Client(srv.url) as c, shoal.Client(srv.url) as producer:
                    c.register_psf("type", "type")
                    runs["http"].append(run("http", lambda: c.tail("type", "PushEvent", timeout=2.0),
                                            producer.ingest, lines, args.rate, seconds, pushes))
            finally:
                srv.kill()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    for label, rs in runs.items():
        for r in rs:
            rows.append([label, f"{r['sent']:,}", f"{r['expected']:,}", f"{r['delivered']:,}", r["missed"],
                         r["extra"] + r["dupes"], f"{r['p50'] * 1e3:.1f}", f"{r['p99'] * 1e3:.1f}",
                         f"{r['max'] * 1e3:.1f}"])
        results[label] = {"runs": rs, "p99": summary([r["p99"] for r in rs]),
                          "missed": sum(r["missed"] for r in rs), "extra": sum(r["extra"] + r["dupes"] for r in rs)}
    print(f"tail of type == PushEvent at {args.rate:,} records/s for {seconds:g} s per run, {args.runs} runs")
    print(table(rows, ["path", "sent", "expected", "delivered", "missed", "extra", "p50 ms", "p99 ms", "max ms"],
                "lrrrrrrrr"))
    results["targets"] = [
        target(f"tail p99 ack -> delivery at {args.rate:,}/s, library (median of runs)", "<= 50 ms",
               results["library"]["p99"]["median"] * 1e3, 50, unit="ms", higher_is_better=False),
        target(f"tail p99 ack -> delivery at {args.rate:,}/s, GET /tail (median of runs)", "<= 50 ms",
               results["http"]["p99"]["median"] * 1e3, 50, unit="ms", higher_is_better=False),
        target("tail records missed or given twice (all runs)", "0",
               results["library"]["missed"] + results["library"]["extra"] + results["http"]["missed"]
               + results["http"]["extra"], 0, unit="", higher_is_better=False),
    ]
    print()
    print(target_table(results["targets"]))
    path = write_result("tail", results, args.out)
    print(f"wrote {path}")
    return results


if __name__ == "__main__":
    main()
