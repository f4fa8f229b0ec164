"""Server metrics in the Prometheus text format (version 0.0.4), written by
hand: a few counters and histograms do not need a client library.

Concurrency: counters are updated from the event loop and from worker
threads (streams finish there), so every update and the rendering take
`_lock`. Store-derived gauges (addresses, records, bytes) are read from
Store.stats() when /metrics is scraped, never kept here.
"""
from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

# Seconds; a query's latency runs from the request to the end of its stream.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _Histogram:
    __slots__ = ("counts", "n", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ingest = {"requests": 0, "records": 0, "rejected": 0, "bytes": 0}
        self.queries: dict[str, int] = defaultdict(int)
        self.query_records: dict[str, int] = defaultdict(int)
        self.latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self.responses: dict[tuple[str, int], int] = defaultdict(int)

    def ingested(self, records: int, rejected: int, input_bytes: int) -> None:
        with self._lock:
            t = self.ingest
            t["requests"] += 1
            t["records"] += records
            t["rejected"] += rejected
            t["bytes"] += input_bytes

    def queried(self, kind: str, records: int, seconds: float) -> None:
        with self._lock:
            self.queries[kind] += 1
            self.query_records[kind] += records
            self.latency[kind].observe(seconds)

    def responded(self, method: str, status: int) -> None:
        with self._lock:
            self.responses[(method, status)] += 1

    def render(self, stats: dict | None) -> str:
        out: list[str] = []

        def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float | int]]) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")
            for labels, v in samples:
                out.append(f"{name}{labels} {v}")

        with self._lock:
            t = dict(self.ingest)
            metric("shoal_http_ingest_requests_total", "counter", "POST /records requests that stored records",
                   [("", t["requests"])])
            metric("shoal_http_ingest_records_total", "counter", "records stored through POST /records",
                   [("", t["records"])])
            metric("shoal_http_ingest_rejected_total", "counter", "records rejected by POST /records",
                   [("", t["rejected"])])
            metric("shoal_http_ingest_bytes_total", "counter", "record bytes read by POST /records (after gunzip)",
                   [("", t["bytes"])])
            kinds = sorted(self.queries)
            metric("shoal_queries_total", "counter", "queries and scans answered, by kind",
                   [(f'{{kind="{k}"}}', self.queries[k]) for k in kinds])
            metric("shoal_query_records_total", "counter", "records streamed by queries and scans, by kind",
                   [(f'{{kind="{k}"}}', self.query_records[k]) for k in kinds])
            out.append("# HELP shoal_query_duration_seconds time from a query's request to the end of its stream")
            out.append("# TYPE shoal_query_duration_seconds histogram")
            for k in kinds:
                h = self.latency[k]
                cum = 0
                for le, c in zip(LATENCY_BUCKETS + ("+Inf",), h.counts):
                    cum += c
                    out.append(f'shoal_query_duration_seconds_bucket{{kind="{k}",le="{le}"}} {cum}')
                out.append(f'shoal_query_duration_seconds_sum{{kind="{k}"}} {h.total}')
                out.append(f'shoal_query_duration_seconds_count{{kind="{k}"}} {h.n}')
            metric("shoal_http_responses_total", "counter", "HTTP responses, by method and status",
                   [(f'{{method="{m}",status="{s}"}}', n) for (m, s), n in sorted(self.responses.items())])
        if stats is not None:
            # A cluster (shoal cluster serve) reports each shard's store,
            # labelled shard="N"; a store reports itself, unlabelled.
            shards = stats.get("shards")
            stores = [(f'shard="{i}"', s) for i, s in enumerate(shards)] if shards is not None else [("", stats)]
            if shards is not None:
                metric("shoal_cluster_shards", "gauge", "shards of the cluster", [("", len(shards))])

            def each(value: Any, extra: str = "") -> list[tuple[str, float | int]]:
                out_ = []
                for label, st in stores:
                    labels = ",".join(x for x in (label, extra) if x)
                    out_.append((f"{{{labels}}}" if labels else "", value(st)))
                return out_

            kinds = ("begin", "head", "read_only", "tail", "flushed_until", "synced_until")
            metric("shoal_log_address", "gauge", "hybrid log addresses (begin <= head <= read_only <= tail; "
                   "synced_until <= flushed_until <= tail)",
                   [x for k in kinds for x in each(lambda st, k=k: st["addresses"][k], f'kind="{k}"')])
            metric("shoal_records", "gauge", "records in the store", each(lambda st: st["records"]))
            metric("shoal_memory_bytes", "gauge", "in-memory log pages in use", each(lambda st: st["memory_bytes"]))
            metric("shoal_memory_budget_bytes", "gauge", "memory budget for log pages",
                   each(lambda st: st["memory_budget_bytes"]))
            metric("shoal_disk_bytes", "gauge", "bytes of segment files", each(lambda st: st["disk_bytes"]))
            metric("shoal_lost_and_found_bytes", "gauge", "bytes recovery moved to lost+found/ (kept until "
                   "removed by hand)", each(lambda st: st["recovery"]["lost_and_found_bytes"]))
            metric("shoal_index_entries", "gauge", "hash index entries", each(lambda st: st["index"]["entries"]))
            metric("shoal_psfs_active", "gauge", "active PSFs", each(lambda st: sum(p["active"] for p in st["psfs"])))
            metric("shoal_psf_over_budget_total", "counter", "records a PSF yielded no value for because its "
                   "expression went over max_eval_steps or max_eval_bytes, since the store opened (per PSF: "
                   "/stats psfs[].over_budget)", each(lambda st: sum(p.get("over_budget", 0) for p in st["psfs"])))
        return "\n".join(out) + "\n"
