"""Seeded generators of realistic JSON records, for tests, examples and
benchmarks at any volume without third-party data.

Each generator returns NDJSON bytes (one record a line, final newline) that
depend only on `n` and `seed`: the same arguments give the same bytes on any
machine and in any later version (tests/test_sample.py pins them by hash).

    github_events(n, seed=1)  GitHub-archive-like events (2015 layout), ~1 KB each:
                              `id`, `type`, `actor{}`, `repo{}`, `payload{}` (its shape
                              depends on the type), `public`, `created_at`, sometimes `org{}`
    zeek_logs(n, seed=1)      Zeek network-monitor logs of 32 kinds, ~400 B each: flat
                              objects told apart by `_path`, keys with dots ("id.resp_p")
    jenkins_jobs(n, seed=1)   `{name, url, color}` jobs as a Jenkins API lists them, ~90 B
    statuses(n, seed=1)       Twitter-search-like statuses, ~2 KB: nested `user{}`,
                              `entities{}`, some `retweeted_status{}`; ids above 2**53
    write(kind, n, path, seed=1)  KINDS[kind](n, seed) (github_events or zeek_logs) to
                              a file; gzip when the name ends in .gz (mtime 0: no date)

What makes them fair workloads:

  * github_events: type skew as in the archive (PushEvent ~50%, CreateEvent
    ~12%, WatchEvent ~10%, ... down to PublicEvent at 0.5%); repositories by
    Zipf popularity (exponent 1.5: the top repo has ~38% of the events, and
    at any volume there are repos with ~5 events, so selectivities of ~5
    records, ~3% and ~40% all exist); actors by a flatter Zipf (1.1);
    messages and names with escapes and non-ASCII text (accents, CJK, emoji);
    5% of the records serialized ASCII-only (`\\uXXXX` escapes).
    `github_value_counts(n, seed)` counts the records per type, repo.name
    and actor.login without building them (the same random streams).
  * zeek_logs: shaped like the WRCCDC 2018 Zeek logs: `_path` skewed as there
    (dns ~34%, ssl ~31%, weird ~15%, analyzer ~10%, rdp, syslog, ... down to
    kinds with a handful of records per 100,000, such as ldap_search);
    `_write_ts` ascends and `ts` is at or a little before it (ISO strings);
    connection kinds carry `uid`, "id.orig_h", "id.orig_p", "id.resp_h" and
    "id.resp_p" (int: 53, 443, 3389, ..., and a few ephemeral ports above
    60000), a connection logged ~2 times on average (one uid, ~2 records); dns has `query` (~4,000 names by Zipf, a few records with null or
    none), `rcode_name` (NXDOMAIN far more often for some names),
    `answers`/`TTLs` arrays, `rtt` floats and flags; about a third of ssl
    has `server_name`. zeek_logs(k, seed) is the first k records of
    zeek_logs(n, seed) for any k < n, so a prefix of one stream is a stream.
  * jenkins_jobs: unique names, `color` of low cardinality (blue ~55%, red
    ~21%, disabled, yellow, aborted, *_anime, grey).
  * statuses: mostly Japanese text with emoji, newlines, quotes and
    backslashes; `id` above 2**53 (`id_str` exact); `lang`,
    `user.screen_name`, `user.lang`, `metadata.result_type`; hashtags,
    mentions and urls with their indices in the text; ~30% retweets.
"""
from __future__ import annotations

import gzip
import os
import pathlib

from .github import events as github_events
from .github import value_counts as github_value_counts
from .jenkins import jobs as jenkins_jobs
from .twitter import statuses
from .zeek import logs as zeek_logs

KINDS = {"github_events": github_events, "zeek_logs": zeek_logs}
"""The generators of workloads by name: the `kind` of write() and of `shoal
sample`. jenkins_jobs and statuses are small shapes for tests, not workloads."""

__all__ = ["KINDS", "github_events", "github_value_counts", "jenkins_jobs", "statuses", "write", "zeek_logs"]


def write(kind: str, n: int, path: str | os.PathLike, seed: int = 1) -> pathlib.Path:
    """Write KINDS[kind](n, seed) to `path` as NDJSON, gzip-compressed when its
    name ends in .gz (mtime 0, so the file's bytes depend only on the
    arguments). The file appears whole: it is written under a temporary name
    (one per process) and renamed. Returns the path."""
    if kind not in KINDS:
        raise ValueError(f"unknown sample kind {kind!r}; one of {', '.join(sorted(KINDS))}")
    path = pathlib.Path(path)
    data = KINDS[kind](n, seed)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path
