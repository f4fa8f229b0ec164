"""HTTP load: concurrent clients against a real `shoal serve`, then an audit.

Starts `shoal serve` (python -m shoal.cli serve) on 127.0.0.1 over a fresh
keyed store (`--key lid`) with a small `--memory` budget, and runs, in
threads of this process, each with its own httpx connection:

  * 4 ingesters posting bodies of --batch records, one body kind each:
    NDJSON, gzip NDJSON (Content-Encoding: gzip), a JSON array
    (application/json), NDJSON with durable=true;
  * 2 queriers: POST /query (one PSF, `all`, `any`, a predicate PSF),
    POST /scan, GET /records/{address}, GET /psfs/{name}/records of a PSF
    that comes and goes;
  * 1 PSF client registering and deregistering two PSFs (a native
    projection and a slow-path predicate), in a loop;
  * 1 admin client: POST /checkpoints, GET /stats, POST /compact of the
    oldest quarter of the log, in a loop.

Every record gets a unique `lid` (load id) as its first member, then the
members of a template record: generated GitHub-like events
(shoal.sample.github_events) and, unless --no-real, real records from
../shared/data/ndjson. The store is keyed by `lid` so that compaction must
copy every record below its cut to the tail (all are live) instead of
dropping it: after the run every acknowledged record must still be there.

Then the audit: a scan finds every record exactly once (live versions and,
with include_superseded, every version in the log), byte for byte as sent;
GET /stats counts the same; queries made after ingest ends (the PSFs of the
run, and the churned PSFs registered again) answer exactly what a plain
orjson + jmespath loop over the stored records answers, newest first.
Printed: p50/p99 latency per request kind, answers by status, the server's
peak memory (VmHWM; and RssAnon, sampled every 50 ms) against the bound
budget + index + 150 MB (benchmarks/memory.py's allowance: the interpreter,
FastAPI and uvicorn, request buffers), records lost. Timings are reported,
not judged: the targets are correctness and memory.

    .venv/bin/python benchmarks/load.py [--quick] [--seconds 180] [--rate 5000] [--memory-mb 64] [--no-real]

tests/api/test_load.py runs the same workload at CI size and asserts the audit.
"""
from __future__ import annotations

import gzip
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jmespath
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (DATA, MB, NO_DATA, ROOT, arg_parser, percentile, table, target, target_table,  # noqa: E402
                     write_result)

KEY = "lid"
ALLOWANCE_BYTES = 150 * MB
# Answers the API documents for what these clients do concurrently: a PSF
# queried or deregistered while the PSF client has it deregistered, a record
# whose address a compaction moved, a PSF registered while active, ingest
# slots full, a body too slow for the server's minimum rate.
DOCUMENTED = {404: {"psf_not_found", "record_not_found"}, 409: {"psf_exists"},
              503: {"too_many_ingests"}, 408: {"body_timeout"}}
# PSFs present for the whole run, and the two the PSF client churns.
STABLE_PSFS = {"type": "type", "repo": "repo.name", "push": "type == 'PushEvent'"}
CHURNED_PSFS = {"churn_login": "actor.login", "churn_slow": "contains(type, 'Comment')"}
SCAN_EXPR = "payload.size > `3`"
INGEST_KINDS = ["ingest ndjson", "ingest gzip", "ingest array", "ingest durable"]


# ---- records --------------------------------------------------------------------

class Records:
    """The records of a run: record(lid) is b'{"lid":<lid>,' + the members of
    template lid % len(templates), so every lid is unique and any record can
    be rebuilt (no copy of the sent bytes is kept)."""

    def __init__(self, templates: list[bytes]):
        assert templates and all(t.startswith(b"{") and t[1:].lstrip()[:1] not in (b"}", b"") for t in templates)
        self.templates = templates
        self._objs: list[Any] | None = None

    def record(self, lid: int) -> bytes:
        return b'{"%s":%d,' % (KEY.encode(), lid) + self.templates[lid % len(self.templates)][1:]

    def template_objects(self) -> list[Any]:
        """The templates as orjson loads them (lid is not among their members)."""
        if self._objs is None:
            self._objs = [orjson.loads(t) for t in self.templates]
        return self._objs


def generated_templates(n: int, seed: int) -> list[bytes]:
    from shoal.sample import github_events  # numpy: only where records are made
    return [line for line in github_events(n, seed=seed).split(b"\n") if line]


def real_templates(per_file: int) -> list[bytes]:
    """Objects from every ../shared/data/ndjson file (none when absent)."""
    out: list[bytes] = []
    if DATA is None or not (DATA / "ndjson").is_dir():
        print(f"real template records: none, {NO_DATA}", flush=True)
        return out
    for path in sorted((DATA / "ndjson").glob("*.ndjson.gz")):
        with gzip.open(path, "rb") as f:
            for line in itertools.islice(f, per_file):
                line = line.strip()
                if line.startswith(b"{") and line != b"{}":
                    out.append(line)
    return out


# ---- the server -----------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """`shoal serve` in a subprocess on a free loopback port."""

    def __init__(self, data_dir: Path, *args: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "shoal.cli", "serve", "--data", str(data_dir), "--port", str(self.port),
               "--log-level", "warning", "--no-access-log", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"shoal serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise RuntimeError("shoal serve did not come up")
            time.sleep(0.05)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


class MemorySampler(threading.Thread):
    """Samples /proc/<pid>/status every 50 ms: peak VmRSS, RssAnon, RssFile
    (sampled, so a spike between samples is missed) and the kernel's own
    peak VmHWM (exact, but it counts resident pages of mapped segment
    files, which are page cache, not memory shoal holds). Peaks are kept
    per `phase` too (set it as the run moves on), and RssAnon once a second
    in `series` as (seconds, phase, bytes)."""

    FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")

    def __init__(self, pid: int, interval_s: float = 0.05):
        super().__init__(daemon=True)
        self.path = Path(f"/proc/{pid}/status")
        self.interval_s = interval_s
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self.by_phase: dict[str, dict[str, int]] = {}
        self.phase = "start"
        self.series: list[tuple[float, str, int]] = []
        self.stopping = threading.Event()
        self._t0 = time.monotonic()

    def sample(self) -> None:
        try:
            text = self.path.read_text()
        except OSError:
            return
        phase = self.by_phase.setdefault(self.phase, dict.fromkeys(self.FIELDS, 0))
        now = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in self.peak:
                now[name] = value = int(rest.split()[0]) * 1024
                self.peak[name] = max(self.peak[name], value)
                phase[name] = max(phase[name], value)
        t = time.monotonic() - self._t0
        if not self.series or t - self.series[-1][0] >= 1.0:
            self.series.append((round(t, 1), self.phase, now.get("RssAnon", 0)))

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            self.sample()

    def stop(self) -> dict[str, int]:
        self.stopping.set()
        self.join()
        self.sample()
        return dict(self.peak)


# ---- the clients ----------------------------------------------------------------

@dataclass
class Tally:
    """Latencies and answers by request kind (shared by all client threads)."""
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    unexpected: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float, r: httpx.Response | None, error: str = "") -> bool:
        """Count one answer; False (and noted) unless it is a success or a
        documented error. A response's body must have been read."""
        if r is None:
            status, code = 0, error
        else:
            status = r.status_code
            code = ""
            if status >= 400:
                try:
                    code = r.json().get("error", "")
                except ValueError:
                    code = "(not JSON)"
        ok = status < 400 or code in DOCUMENTED.get(status, ())
        with self.lock:
            self.answers[kind][f"{status} {code}".strip()] += 1
            if status and status < 400:
                self.latencies[kind].append(seconds)
        if not ok:
            self.note(kind, status, r.text[:300] if r is not None else error)
        return ok

    def note(self, kind: str, status: int, what: str) -> None:
        with self.lock:
            self.unexpected.append((kind, status, what))


def _timed(http: httpx.Client, tally: Tally, kind: str, method: str, url: str, **kw: Any) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = http.request(method, url, **kw)
    except httpx.HTTPError as e:
        tally.add(kind, time.perf_counter() - t0, None, f"{type(e).__name__}: {e}")
        return None
    tally.add(kind, time.perf_counter() - t0, r)
    return r


@dataclass
class Run:
    url: str
    records: Records
    seconds: float                      # ingest ends after this long ...
    max_records: int                    # ... or once this many records were sent
    batch: int = 500
    rate_records_s: float | None = None  # all ingesters together; None: as fast as they go
    seed: int = 1
    tally: Tally = field(default_factory=Tally)
    acked: list[int] = field(default_factory=list)      # lids the server acknowledged
    unacked: list[int] = field(default_factory=list)    # lids of bodies that failed
    compactions: list[dict] = field(default_factory=list)
    ingest_done: threading.Event = field(default_factory=threading.Event)
    _next: itertools.count = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ingest
    def _take(self, n: int) -> range | None:
        with self._lock:
            start = next(self._next) * self.batch
        if start >= self.max_records:
            return None
        return range(start, min(start + n, self.max_records))

    def ingester(self, i: int) -> None:
        kind = INGEST_KINDS[i % len(INGEST_KINDS)]
        t_end = time.monotonic() + self.seconds
        per_s = self.rate_records_s / len(INGEST_KINDS) if self.rate_records_s else None
        t0, sent = time.monotonic(), 0
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while time.monotonic() < t_end:
                lids = self._take(self.batch)
                if lids is None:
                    break
                recs = [self.records.record(lid) for lid in lids]
                headers, params = {"Content-Type": "application/x-ndjson"}, {}
                if kind == "ingest array":
                    body = b"[" + b",\n".join(recs) + b"]"
                    headers = {"Content-Type": "application/json"}
                else:
                    body = b"\n".join(recs) + b"\n"
                if kind == "ingest gzip":
                    body = gzip.compress(body, compresslevel=1)
                    headers["Content-Encoding"] = "gzip"
                if kind == "ingest durable":
                    params["durable"] = "true"
                r = _timed(http, self.tally, kind, "POST", "/records", content=body, headers=headers, params=params)
                good = r is not None and r.status_code == 200 and r.json()["ingested"] == len(recs) \
                    and r.json()["rejected"] == 0
                if r is not None and r.status_code == 200 and not good:
                    self.tally.note(kind, 200, r.text[:300])
                with self._lock:
                    (self.acked if good else self.unacked).extend(lids)
                sent += len(recs)
                if per_s:
                    time.sleep(max(0.0, t0 + sent / per_s - time.monotonic()))

    # queries
    def querier(self, i: int, pick: dict[str, list[str]]) -> None:
        rng = random.Random(self.seed * 1000 + i)
        addresses: list[int] = []
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.ingest_done.is_set():
                op = rng.choice(["query", "query", "query_all", "query_any", "query_pred", "scan", "get",
                                 "query_churned"])
                if op == "query":
                    r = _timed(http, self.tally, op, "POST", "/query?with_address=true",
                               json={"psf": "type", "value": rng.choice(pick["type"]), "limit": 100})
                    if r is not None and r.status_code == 200:
                        addresses = [orjson.loads(line)["address"] for line in r.content.splitlines()[:20]]
                elif op == "query_all":
                    repo = {"psf": "repo", "value": rng.choice(pick["repo"])}
                    _timed(http, self.tally, op, "POST", "/query",
                           json={"all": [{"psf": "type", "value": "PushEvent"}, repo], "limit": 100})
                elif op == "query_any":
                    repo = {"psf": "repo", "value": rng.choice(pick["repo"])}
                    _timed(http, self.tally, op, "POST", "/query",
                           json={"any": [{"psf": "type", "value": "ForkEvent"}, repo], "limit": 100})
                elif op == "query_pred":
                    _timed(http, self.tally, op, "POST", "/query", json={"psf": "push", "limit": 100,
                                                                          "order": rng.choice(["newest", "oldest"])})
                elif op == "scan":
                    _timed(http, self.tally, op, "POST", "/scan", json={"expr": SCAN_EXPR, "limit": 50})
                elif op == "get" and addresses:
                    _timed(http, self.tally, op, "GET", f"/records/{rng.choice(addresses)}")
                elif op == "query_churned":
                    _timed(http, self.tally, op, "GET", "/psfs/churn_login/records",
                           params={"value": orjson.dumps(rng.choice(pick["login"])).decode(), "limit": 50})

    def psf_client(self) -> None:
        with httpx.Client(base_url=self.url, timeout=120) as http:
            while not self.ingest_done.is_set():
                for name, expr in CHURNED_PSFS.items():
                    _timed(http, self.tally, "register", "POST", "/psfs", json={"name": name, "expr": expr})
                self.ingest_done.wait(0.5)
                for name in CHURNED_PSFS:
                    _timed(http, self.tally, "deregister", "DELETE", f"/psfs/{name}")
                self.ingest_done.wait(0.3)

    def admin(self) -> None:
        with httpx.Client(base_url=self.url, timeout=300) as http:
            while not self.ingest_done.is_set():
                _timed(http, self.tally, "checkpoint", "POST", "/checkpoints")
                if self.ingest_done.wait(1.0):
                    break
                r = _timed(http, self.tally, "stats", "GET", "/stats")
                if r is None or r.status_code != 200:
                    continue
                a = r.json()["addresses"]
                cut = a["begin"] + (a["tail"] - a["begin"]) // 4
                r = _timed(http, self.tally, "compact", "POST", "/compact", json={"until_address": cut})
                if r is not None and r.status_code == 200:
                    self.compactions.append(r.json())
                self.ingest_done.wait(1.0)

    def go(self, pick: dict[str, list[str]]) -> float:
        """Run every client; seconds the ingest lasted."""
        with httpx.Client(base_url=self.url, timeout=60) as http:
            for name, expr in STABLE_PSFS.items():
                r = http.post("/psfs", json={"name": name, "expr": expr})
                assert r.status_code == 201, r.text
        ingesters = [threading.Thread(target=self.ingester, args=(i,), name=f"ingest-{i}")
                     for i in range(len(INGEST_KINDS))]
        others = [threading.Thread(target=self.querier, args=(i, pick), name=f"query-{i}") for i in range(2)]
        others += [threading.Thread(target=self.psf_client, name="psfs"),
                   threading.Thread(target=self.admin, name="admin")]
        t0 = time.perf_counter()
        for t in ingesters + others:
            t.start()
        for t in ingesters:
            t.join()
        seconds = time.perf_counter() - t0
        self.ingest_done.set()
        for t in others:
            t.join()
        return seconds


def choices(records: Records, n: int = 5) -> dict[str, list[str]]:
    """Values the queriers ask for: every type, and the most common repos
    and logins among the templates (orjson, not the store)."""
    out: dict[str, list[str]] = {}
    for name, path in (("type", "type"), ("repo", "repo.name"), ("login", "actor.login")):
        counts = Counter(v for v in (_search(path, o) for o in records.template_objects()) if isinstance(v, str))
        out[name] = [v for v, _ in counts.most_common(None if name == "type" else n)] or ["-"]
    return out


# ---- the audit ------------------------------------------------------------------

_compiled: dict[str, Any] = {}


def _search(expr: str, obj: Any) -> Any:
    c = _compiled.get(expr) or _compiled.setdefault(expr, jmespath.compile(expr))
    try:
        return c.search(obj)
    except Exception:  # noqa: BLE001 - an evaluation error means no value, as in shoal
        return None


def _truthy(v: Any) -> bool:
    return not (v is None or v is False or v in ("", [], {}))


def _matches(expr: str, value: Any, obj: Any) -> bool:
    """A PSF's value equals `value` (strings and true here: indexed values)."""
    got = _search(expr, obj)
    return got is True if value is True else isinstance(got, str) and got == value


def _lid_of(raw: bytes) -> int:
    prefix = b'{"%s":' % KEY.encode()
    assert raw.startswith(prefix), raw[:80]
    return int(raw[len(prefix):raw.index(b",", len(prefix))])


def _answer(http: httpx.Client, records: Records, path: str, body: dict) -> list[tuple[int, int, bool]]:
    """(address, lid, bytes as sent?) of each record of an NDJSON answer,
    read as it streams (an answer may be most of the store)."""
    out: list[tuple[int, int, bool]] = []
    prefix = b'{"address":'

    def take(line: bytes) -> None:
        head, _, raw = line.partition(b',"record":')
        assert head.startswith(prefix) and raw.endswith(b"}"), line[:200]
        raw = raw[:-1]
        lid = _lid_of(raw)
        out.append((int(head[len(prefix):]), lid, raw == records.record(lid)))

    with http.stream("POST", path, params={"with_address": "true"}, json=body) as r:
        if r.status_code != 200:
            raise AssertionError(f"{path} {body}: {r.status_code} {r.read()[:500]!r}")
        carry = b""
        for chunk in r.iter_bytes():
            lines = (carry + chunk).split(b"\n")
            carry = lines.pop()
            for line in lines:
                take(line)
        assert carry == b"", "an NDJSON answer ends with a newline"
    return out


def audit(url: str, records: Records, acked: list[int], unacked: list[int], pick: dict[str, list[str]]) -> dict:
    """Compare the store with what was sent: records (exactly once, byte for
    byte), counts, and answers to queries against a plain orjson + jmespath
    loop over the stored records."""
    acked_set, unacked_set = set(acked), set(unacked)
    out: dict[str, Any] = {}
    with httpx.Client(base_url=url, timeout=600) as http:
        live = _answer(http, records, "/scan", {"expr": "`true`", "order": "oldest"})
        every = _answer(http, records, "/scan", {"expr": "`true`", "order": "oldest", "include_superseded": True})
        lids = Counter(lid for _, lid, _ in live)
        out["scanned"] = len(live)
        out["versions_scanned"] = len(every)
        out["stats_records"] = http.get("/stats").json()["records"]
        out["lost_count"] = len(acked_set - set(lids))
        out["lost"] = sorted(acked_set - set(lids))[:20]
        out["duplicates"] = sorted(lid for lid, n in lids.items() if n > 1)[:20]
        out["version_duplicates"] = sorted(lid for lid, n in Counter(lid for _, lid, _ in every).items()
                                           if n > 1)[:20]
        out["unknown"] = sorted(set(lids) - acked_set - unacked_set)[:20]
        out["unacked_present"] = len(set(lids) & unacked_set)
        out["altered"] = sorted(lid for _, lid, same in live + every if not same)[:20]
        del live, every

        # Queries after ingest; the churned PSFs registered once more (their
        # answers join indexed ranges and scans of the ranges between).
        for name, expr in CHURNED_PSFS.items():
            r = http.post("/psfs", json={"name": name, "expr": expr})
            assert r.status_code in (201, 409), r.text
        objs = records.template_objects()
        present = sorted(lids)
        repo, login = pick["repo"][0], pick["login"][0]
        exprs = {**STABLE_PSFS, **CHURNED_PSFS}
        cases: list[tuple[str, str, dict, Any]] = [
            (f"type = {t}", "/query", {"psf": "type", "value": t}, lambda o, t=t: _matches(exprs["type"], t, o))
            for t in pick["type"][:3]]
        cases += [
            ("push (predicate)", "/query", {"psf": "push"}, lambda o: _matches(exprs["push"], True, o)),
            ("all: PushEvent, top repo", "/query",
             {"all": [{"psf": "type", "value": "PushEvent"}, {"psf": "repo", "value": repo}]},
             lambda o: _matches(exprs["type"], "PushEvent", o) and _matches(exprs["repo"], repo, o)),
            ("any: ForkEvent, top repo", "/query",
             {"any": [{"psf": "type", "value": "ForkEvent"}, {"psf": "repo", "value": repo}]},
             lambda o: _matches(exprs["type"], "ForkEvent", o) or _matches(exprs["repo"], repo, o)),
            ("churned projection", "/query", {"psf": "churn_login", "value": login},
             lambda o: _matches(exprs["churn_login"], login, o)),
            ("churned slow path", "/query", {"psf": "churn_slow"}, lambda o: _matches(exprs["churn_slow"], True, o)),
            (f"scan {SCAN_EXPR}", "/scan", {"expr": SCAN_EXPR}, lambda o: _truthy(_search(SCAN_EXPR, o))),
        ]
        out["queries"] = []
        for name, path, body, pred in cases:
            # the oracle: each template's verdict once, then every stored lid
            verdict = [bool(pred(o)) for o in objs]
            want = [lid for lid in present if verdict[lid % len(objs)]]
            got = _answer(http, records, path, body)
            out["queries"].append({
                "query": name, "body": body, "expected": len(want), "got": len(got),
                "equal": sorted(lid for _, lid, _ in got) == want,
                "newest_first": all(a > b for (a, _, _), (b, _, _) in zip(got, got[1:])),
                "bytes_equal": all(same for _, _, same in got),
            })
    return out


# ---- report ---------------------------------------------------------------------

KIND_ORDER = INGEST_KINDS + ["query", "query_all", "query_any", "query_pred", "scan", "get", "query_churned",
                             "register", "deregister", "checkpoint", "stats", "compact"]


def latency_table(tally: Tally) -> str:
    rows = []
    for kind in [k for k in KIND_ORDER if k in tally.answers] + sorted(set(tally.answers) - set(KIND_ORDER)):
        lat = tally.latencies.get(kind, [])
        answers = ", ".join(f"{k}: {v:,}" for k, v in sorted(tally.answers[kind].items()))
        rows.append([kind, f"{len(lat):,}", f"{percentile(lat, 50) * 1e3:,.1f}" if lat else "-",
                     f"{percentile(lat, 99) * 1e3:,.1f}" if lat else "-", answers])
    return table(rows, ["request", "ok", "p50 ms", "p99 ms", "answers"], align="lrrr")


def memory_bound(budget_bytes: int, index_bytes: int) -> int:
    """The documented peak for the server's anonymous memory."""
    return budget_bytes + index_bytes + int(ALLOWANCE_BYTES)


def main(argv: list[str] | None = None) -> dict:
    ap = arg_parser(__doc__)
    ap.add_argument("--seconds", type=float, help="how long ingest runs (default 180; --quick 10)")
    ap.add_argument("--records", type=int, help="at most this many records (default 5,000,000; --quick 20,000)")
    ap.add_argument("--memory-mb", type=float, help="the server's --memory (default 64; --quick 8)")
    ap.add_argument("--page-kib", type=int, default=1024, help="the server's --page-size in KiB (default 1024)")
    ap.add_argument("--batch", type=int, default=500, help="records per ingest body (default 500)")
    ap.add_argument("--rate", type=float, help="records/s of the 4 ingesters together, paced so the other "
                                                "clients run beside ingest throughout (default 5,000; --quick "
                                                "2,000; 0: as fast as they go)")
    ap.add_argument("--templates", type=int, help="generated template events (default 50,000; --quick 5,000)")
    ap.add_argument("--no-real", action="store_true", help="generated events only (no ../shared/data/ndjson)")
    args = ap.parse_args(argv)
    seconds = args.seconds or (10 if args.quick else 180)
    max_records = args.records or (20_000 if args.quick else 5_000_000)
    budget = int((args.memory_mb or (8 if args.quick else 64)) * (1 << 20))
    templates = generated_templates(args.templates or (5_000 if args.quick else 50_000), seed=1)
    real = [] if args.no_real else real_templates(500 if args.quick else 5_000)
    records = Records(templates + real)
    pick = choices(records)
    print(f"{len(templates):,} generated + {len(real):,} real template records; ingest for {seconds:.0f} s "
          f"or {max_records:,} records; memory budget {budget / MB:,.1f} MB, pages {args.page_kib} KiB",
          flush=True)

    work = Path(tempfile.mkdtemp(prefix="shoal-load-"))
    try:
        server = Serve(work / "data", "--memory", str(budget), "--page-size", f"{args.page_kib}KiB", "--key", KEY)
        sampler = MemorySampler(server.proc.pid)
        sampler.start()
        try:
            rate = args.rate if args.rate is not None else (2_000 if args.quick else 5_000)
            run = Run(server.url, records, seconds=seconds, max_records=max_records, batch=args.batch,
                      rate_records_s=rate or None)
            sampler.phase = "load"
            ingest_s = run.go(pick)
            sampler.phase = "audit"
            t0 = time.perf_counter()
            result = audit(server.url, records, run.acked, run.unacked, pick)
            audit_s = time.perf_counter() - t0
            stats = httpx.get(server.url + "/stats", timeout=60).json()
            peak = sampler.stop()
        finally:
            rc = server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    index_bytes = stats["index"]["bytes"]
    bound = memory_bound(budget, index_bytes)
    sent = len(run.acked) + len(run.unacked)
    input_mb = stats["ingest"]["bytes"] / MB
    print(f"\ningest: {sent:,} records sent in {ingest_s:.1f} s ({len(run.acked):,} acknowledged, "
          f"{input_mb:,.0f} MB, {input_mb / ingest_s:,.1f} MB/s), {len(run.compactions)} compactions "
          f"({sum(c['records_copied'] for c in run.compactions):,} records copied); "
          f"log {stats['log_bytes'] / MB:,.0f} MB; "
          f"audit {audit_s:.1f} s; server exit code {rc}\n")
    print(latency_table(run.tally))
    print()
    qrows = [[q["query"], f"{q['expected']:,}", f"{q['got']:,}",
              "yes" if q["equal"] and q["newest_first"] and q["bytes_equal"] else "NO"] for q in result["queries"]]
    print(table(qrows, ["query after ingest", "oracle", "answer", "equal"], align="lrr"))
    print()
    mrows = [["memory budget", f"{budget / MB:,.1f}"], ["index", f"{index_bytes / MB:,.1f}"],
             ["allowance", f"{ALLOWANCE_BYTES / MB:,.0f}"], ["= bound for RssAnon", f"{bound / MB:,.1f}"],
             ["peak RssAnon (sampled)", f"{peak['RssAnon'] / MB:,.1f}"],
             ["peak VmHWM (incl. mapped segment pages)", f"{peak['VmHWM'] / MB:,.1f}"],
             ["peak RssFile (sampled)", f"{peak['RssFile'] / MB:,.1f}"]]
    mrows += [[f"peak RssAnon during {phase}", f"{p['RssAnon'] / MB:,.1f}"]
              for phase, p in sampler.by_phase.items()]
    print(table(mrows, ["server memory", "MB"], align="lr"))
    print(f"\nrecords: scanned {result['scanned']:,}, /stats {result['stats_records']:,}, lost {result['lost_count']}, "
          f"duplicated {len(result['duplicates'])}, altered {len(result['altered'])}, "
          f"unknown {len(result['unknown'])}, "
          f"unacknowledged but present {result['unacked_present']}; unexpected answers {len(run.tally.unexpected)}")
    for u in run.tally.unexpected[:10]:
        print("  unexpected:", u)

    wrong_queries = sum(not (q["equal"] and q["newest_first"] and q["bytes_equal"]) for q in result["queries"])
    payload = {
        "quick": args.quick, "seconds": seconds, "max_records": max_records, "budget_bytes": budget,
        "page_kib": args.page_kib, "batch": args.batch, "templates": len(records.templates),
        "ingest_seconds": ingest_s, "sent": sent, "acked": len(run.acked), "input_bytes": stats["ingest"]["bytes"],
        "log_bytes": stats["log_bytes"], "compactions": run.compactions, "server_exit_code": rc,
        "latency_ms": {k: {"n": len(v), "p50": percentile(v, 50) * 1e3, "p99": percentile(v, 99) * 1e3}
                       for k, v in run.tally.latencies.items() if v},
        "answers": {k: dict(v) for k, v in run.tally.answers.items()},
        "unexpected": run.tally.unexpected[:50], "memory_peak_bytes": peak, "memory_by_phase": sampler.by_phase,
        "rss_anon_series": sampler.series, "index_bytes": index_bytes,
        "memory_bound_bytes": bound, "audit": result,
    }
    payload["targets"] = [
        target("acknowledged records lost", "= 0", result["lost_count"], 0, higher_is_better=False),
        target("records duplicated, altered or never sent", "= 0",
               len(result["duplicates"]) + len(result["altered"]) + len(result["unknown"]), 0,
               higher_is_better=False),
        target("undocumented answers (500s, transport errors)", "= 0", len(run.tally.unexpected), 0,
               higher_is_better=False),
        target("queries after ingest that differ from the oracle", "= 0", wrong_queries, 0, higher_is_better=False),
        target("server peak RssAnon", "<= budget + index + 150 MB", peak["RssAnon"] / MB, bound / MB, unit="MB",
               higher_is_better=False),
    ]
    print()
    print(target_table(payload["targets"]))
    out = write_result("load", payload, args.out)
    print(f"wrote {out}")
    return payload


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    main()
