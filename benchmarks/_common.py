"""Shared helpers for benchmark scripts: data, interleaved timing, targets,
tables and JSON results.

Every script measures shoal and its peers in one process, in rounds (one run
of each per round), so machine noise hits all alike; figures are medians of
the rounds and ratios are medians of the per-round ratios.
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# numpy (the event generator) starts OpenBLAS threads that spin on the second
# core; benchmark processes never import it, and children get one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parent.parent

def _data_dir() -> Path | None:
    """The real data sets: $SHOAL_DATA, else ../shared/data beside the
    repository (the documented place), else none: the parts measured on them
    are skipped, saying NO_DATA."""
    env = os.environ.get("SHOAL_DATA")
    if env:
        return Path(env)
    beside = ROOT.parent / "shared" / "data"
    return beside if beside.is_dir() else None


DATA = _data_dir()
NO_DATA = "needs the real data sets: set SHOAL_DATA=DIR or put them at ../shared/data"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"
MB = 1e6


# ---- data ----
def real_file(*parts: str) -> Path | None:
    """DATA/parts when the real data is there, else None (skip, saying NO_DATA)."""
    path = DATA.joinpath(*parts) if DATA is not None else None
    return path if path is not None and path.exists() else None


def load_ndjson(name: str) -> bytes:
    path = real_file("ndjson", name)
    if path is None:
        raise FileNotFoundError(f"ndjson/{name}: {NO_DATA}")
    return gzip.open(path).read()


def events_file(n: int, seed: int = 1) -> Path:
    """NDJSON file of n generated events (benchmarks/gen_events.py), cached
    in benchmarks/results/cache/ with a `.counts.json` of value counts.
    Generated in a child process, so numpy stays out of timing processes."""
    path = CACHE / f"events-{n}-s{seed}.ndjson"
    if not (path.exists() and path.with_suffix(".counts.json").exists()):
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_events.py"), "-n", str(n),
                        "--seed", str(seed), "-o", str(path), "--counts"], check=True)
    return path


def events_counts(n: int, seed: int = 1) -> dict[str, dict[str, int]]:
    """{"type"|"repo.name"|"actor.login": {value: records}} of events_file(n, seed)."""
    return json.loads(events_file(n, seed).with_suffix(".counts.json").read_text())


def pick_values(counts: dict[str, int], want: float, k: int = 1) -> list[str]:
    """The k values whose record counts are nearest to `want`."""
    ranked = sorted(counts.items(), key=lambda kv: (abs(kv[1] - want), -kv[1], kv[0]))
    return [v for v, _ in ranked[:k]]


# How to make copy k of a real record distinct: rewrite its id (first match).
_ID_RULES = {
    "github_events.ndjson.gz": (re.compile(rb'"id":"(\d+)"'), lambda m, k: b'"id":"%s-%d"' % (m[1], k)),
    "twitter_statuses.ndjson.gz": (re.compile(rb'"id":(\d+),"id_str":"\d+"'),
                                   lambda m, k: b'"id":%d,"id_str":"%d"' % ((int(m[1]) + k * 10**13,) * 2)),
    "twitter_timeline.ndjson.gz": (re.compile(rb'"id":(\d+),"id_str":"\d+"'),
                                   lambda m, k: b'"id":%d,"id_str":"%d"' % ((int(m[1]) + k * 10**13,) * 2)),
    "zeek_wrccdc2018.ndjson.gz": (re.compile(rb'"uid":"(\w+)"'), lambda m, k: b'"uid":"%s-%d"' % (m[1], k)),
}


def replay(name: str, copies: int = 1, max_bytes: int = 0) -> bytes:
    """A real NDJSON stream, `copies` times over, each copy's records made
    distinct by rewriting their id (copy 0 is the original bytes); cut at
    the last whole line within max_bytes when that is set."""
    data = load_ndjson(name)
    if copies > 1:
        pattern, sub = _ID_RULES[name]
        parts = [data] + [pattern.sub(lambda m, k=k: sub(m, k), data) for k in range(1, copies)]
        data = b"".join(parts)
    if max_bytes and len(data) > max_bytes:
        data = data[: data.rindex(b"\n", 0, max_bytes) + 1]
    return data


def drop_cache(paths: list[Path]) -> None:
    """Evict these files' pages from the OS page cache (no root needed)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def split_batches(data: bytes, batch_bytes: int) -> list[bytes]:
    """NDJSON cut at line ends into batches of about batch_bytes."""
    out, start = [], 0
    while start < len(data):
        end = data.find(b"\n", min(start + batch_bytes, len(data)) - 1)
        end = len(data) if end < 0 else end + 1
        out.append(data[start:end])
        start = end
    return out


def page_config(data_bytes: int, fraction: float, page_bytes: int = 4 << 20) -> dict:
    """Store settings with a memory budget of `fraction` of the data: pages
    shrink (down to 64 KiB) until the budget holds at least 4 of them."""
    budget = int(data_bytes * fraction)
    while page_bytes > 64 << 10 and budget < 4 * page_bytes:
        page_bytes //= 2
    budget = max(2 * page_bytes, budget - budget % page_bytes)
    return {"page_size_bytes": page_bytes, "memory_budget_bytes": budget}


# ---- timing ----
def repeat(fn, n: int) -> list[float]:
    """Run fn n times; seconds per run."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    r = fn()
    return time.perf_counter() - t0, r


def rounds(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, list[float]]:
    """Interleave: `runs` rounds, each running every fn once in order;
    seconds per run, by name."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t0)
    return out


def summary(samples: list[float]) -> dict:
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples),
            "runs": len(samples)}


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def paired_ratio(num: list[float], den: list[float]) -> dict:
    """Median (and range) of per-round ratios num[i] / den[i]."""
    r = [a / b for a, b in zip(num, den) if b]
    return summary(r) if r else {"min": 0, "median": 0, "max": 0, "runs": 0}


def rate_summary(amount: float, seconds: list[float]) -> dict:
    """amount / s for every run: min/median/max of the rate."""
    return summary([amount / s for s in seconds])


# ---- machine ----
def git_sha() -> str:
    try:
        sha = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "shoal"], cwd=ROOT).returncode
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "system": platform.system(), "load_avg": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def dd_write(directory: Path, mib: int) -> float:
    """Seconds for dd to write mib MiB of zeros to a file in `directory`
    and fdatasync it (the disk's sequential write bandwidth, page cache
    included as any buffered writer sees it)."""
    path = Path(directory) / "dd-bandwidth.tmp"
    try:
        t0 = time.perf_counter()
        p = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={mib}", "conv=fdatasync"],
                           capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        m = re.search(r"copied, ([0-9.]+) s", p.stderr)
        return float(m[1]) if m else wall
    finally:
        path.unlink(missing_ok=True)


# ---- arguments and output ----
def arg_parser(doc: str) -> argparse.ArgumentParser:
    """--runs, --quick and --out, common to every script."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(doc.splitlines()[1:]))
    ap.add_argument("--runs", type=int, default=3, help="rounds (each runs shoal and every peer once); >= 3")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: seconds, for smoke tests")
    ap.add_argument("--out", type=Path, help="write the JSON result here (default: benchmarks/results/NAME-TIME.json)")
    return ap


def target(name: str, required: str, measured: float, threshold: float, *, unit: str = "",
           higher_is_better: bool = True, detail: str = "") -> dict:
    """One target line. ratio >= 1 means PASS: measured/threshold when higher
    is better, threshold/measured when lower is."""
    if higher_is_better:
        ratio = measured / threshold if threshold else 0.0
    else:
        ratio = threshold / measured if measured else math.inf
    return {"target": name, "required": required, "measured": measured, "threshold": threshold, "unit": unit,
            "ratio": ratio, "pass": ratio >= 1.0, "detail": detail}


def target_table(targets: list[dict]) -> str:
    rows = [[t["target"], t["required"], f"{_num(t['measured'])} {t['unit']}".strip(), f"{t['ratio']:.2f}",
             "PASS" if t["pass"] else "MISS"] for t in targets]
    return table(rows, ["target", "required", "measured", "ratio", "result"])


def _num(x: float) -> str:
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def write_result(name: str, payload: dict, out: Path | None = None) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = dict(payload, name=name, git_sha=git_sha(), machine=machine(), time=time.time())
    path = out or RESULTS / f"{name}-{int(time.time())}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1))
    return path


def table(rows: list[list], header: list[str], align: str = "") -> str:
    """Columns padded to width; `align` has one letter per column, "r" for
    right-aligned (numbers), anything else left."""
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def cell(c: str, i: int) -> str:
        return c.rjust(widths[i]) if i < len(align) and align[i] == "r" else c.ljust(widths[i])

    lines = ["  ".join(cell(c, i) for i, c in enumerate(r)).rstrip() for r in cols]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt_mmm(samples_summary: dict, scale: float = 1.0, fmt: str = "{:,.0f}") -> str:
    """'min/median/max' of a summary, scaled."""
    return "/".join(fmt.format(samples_summary[k] * scale) for k in ("min", "median", "max"))
