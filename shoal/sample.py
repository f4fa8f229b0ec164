"""Seeded generators of realistic JSON records, for tests, examples and
benchmarks at any volume without third-party data.

Each generator returns NDJSON bytes (one record a line, final newline) that
depend only on `n` and `seed`: the same arguments give the same bytes on any
machine and in any later version (tests pin small outputs by hash).

    github_events(n, seed=1)  GitHub-archive-like events (2015 layout), ~1 KB each:
                              `id`, `type`, `actor{}`, `repo{}`, `payload{}` (its shape
                              depends on the type), `public`, `created_at`, sometimes `org{}`
    zeek_logs(n, seed=1)      Zeek network-monitor logs of 32 kinds, ~400 B each: flat
                              objects keyed by `_path`, keys with dots ("id.resp_p")
    write(kind, n, path, seed=1)  one of the above (KINDS) to a file; gzip when the
                              name ends in .gz (mtime 0: the same bytes every time)

What makes them fair workloads:

  * github_events: type skew as in the archive (PushEvent ~50%, CreateEvent
    ~12%, WatchEvent ~10%, ... down to PublicEvent at 0.5%); repositories by
    Zipf popularity (exponent 1.5: the top repo has ~38% of the events, and
    at any volume there are repos with ~5 events, so selectivities of ~5
    records, ~3% and ~40% all exist); actors by a flatter Zipf (1.1);
    messages and names with escapes and non-ASCII text (accents, CJK, emoji);
    5% of the records serialized ASCII-only (`\\uXXXX` escapes).
    `github_value_counts` recomputes the repo and actor of every record
    without building records (the same random streams).
  * zeek_logs: shaped like the WRCCDC 2018 Zeek logs: `_path` skewed as there
    (dns ~34%, ssl ~31%, weird ~15%, analyzer ~10%, rdp, syslog, ... down to
    kinds with a handful of records per 100,000, such as ldap_search);
    `_write_ts` ascends (`ts` is at or a little before it), ISO strings;
    connection kinds carry `uid`, `"id.orig_h"`, `"id.orig_p"`,
    `"id.resp_h"`, `"id.resp_p"` (int; 53, 443, 3389, ..., and a few
    ephemeral ports above 60000); dns has `query` (~4,000 names by Zipf,
    a few records without one or with null), `rcode_name` (NXDOMAIN for some
    names more than others), `answers`/`TTLs` arrays, `rtt` floats, flags;
    ssl has `server_name` in about a third. Unlike the others, zeek_logs(k)
    is the first k records of zeek_logs(n) for k < n (records come in seeded
    blocks), so a test can take any prefix of one generated stream.
"""
from __future__ import annotations

import functools
import gzip
import json
import os
import pathlib
import time
from collections import Counter

import numpy as np
import orjson

# --- github_events ------------------------------------------------------------
# The output of this section is pinned byte for byte (benchmark caches and the
# figures recorded in benchmarks/README.md depend on it): change nothing here
# that changes a record; add new kinds instead.

TYPES = [("PushEvent", 0.500), ("CreateEvent", 0.120), ("WatchEvent", 0.100), ("IssueCommentEvent", 0.070),
         ("PullRequestEvent", 0.050), ("IssuesEvent", 0.040), ("ForkEvent", 0.040), ("DeleteEvent", 0.030),
         ("PullRequestReviewCommentEvent", 0.015), ("GollumEvent", 0.010), ("ReleaseEvent", 0.005),
         ("MemberEvent", 0.005), ("CommitCommentEvent", 0.005), ("PublicEvent", 0.005)]
REPO_ZIPF = 1.5
ACTOR_ZIPF = 1.1
_MAX_REPOS = 1 << 24
_MAX_ACTORS = 1 << 20

_OWNERS = ["torvalds", "mozilla", "rails", "apache", "golang", "rust-lang", "nodejs", "django", "kubernetes",
           "facebook", "google", "microsoft", "twbs", "angular", "vuejs", "elastic", "hashicorp", "docker",
           "numpy", "pandas-dev", "scikit-learn", "tensorflow", "pytorch", "jquery", "d3", "atom", "neovim",
           "home-assistant", "ansible", "grafana", "prometheus", "redis", "sqlite", "postgres", "curl",
           "openssl", "llvm", "gcc-mirror", "bitcoin", "ethereum"]
_PROJECTS = ["linux", "gecko-dev", "rails", "spark", "go", "rust", "node", "django", "kubernetes", "react",
             "guava", "vscode", "bootstrap", "angular.js", "vue", "elasticsearch", "terraform", "moby",
             "numpy", "pandas", "scikit-learn", "tensorflow", "pytorch", "jquery", "d3", "atom", "neovim",
             "core", "ansible", "grafana", "prometheus", "redis", "sqlite", "postgres", "curl", "openssl",
             "llvm-project", "gcc", "bitcoin", "go-ethereum", "dotfiles", "blog", "homework", "6.828"]
_USERS = ["petroav", "jathanism", "noahlu", "armaklan", "imsky", "octocat", "defunkt", "mojombo", "pjhyett",
          "wycats", "ezmobius", "ivey", "evanphx", "vanpelt", "wayneeseguin", "brynary", "kevinclark",
          "technoweenie", "macournoyer", "takeo", "caged", "topfunky", "anotherjesse", "roland", "lukas",
          "fanvsfan", "tomtt", "railsjitsu", "nitay", "kevwil"]
_NAMES = ["Petros Angelatos", "Jathan McCollum", "José Müller", "Zoë Ångström", "李小龙", "Søren Kierkegaard",
          "Renée O'Connor", "Łukasz Żółć", "Иван Петров", "Ada Lovelace", "Grace Hopper", "佐藤 太郎"]
_WORDS = ("fix add remove update refactor docs test build bump release merge revert improve support handle "
          "parser index cache query config client server api error typo readme license ci deps version "
          "memory leak crash race timeout encoding unicode path windows linux macos").split()
_SPICE = ["Merge pull request #{n} from {u}/patch-{m}\n\nFix the \"edge\" case", "Übersetzung aktualisiert",
          "修复了一个错误", "Add emoji support 🎉🚀", "Handle tab\tseparated values", "Escape C:\\path\\to\\file",
          "Ürünler sayfası düzeltildi", "Исправлена ошибка", "README: « guillemets » and — dashes",
          "Quote \"it\" and 'that'", "Line one\nLine two\r\nLine three", "日本語のドキュメントを更新"]
_COMMITS = [1] * 6 + [2] * 7 + [3] * 5 + [4] * 2  # commits per push: 1 (30%), 2 (35%), 3 (25%), 4
_ACTIONS = {"IssuesEvent": ["opened", "closed", "reopened"], "PullRequestEvent": ["opened", "closed", "synchronize"],
            "IssueCommentEvent": ["created"], "PullRequestReviewCommentEvent": ["created"],
            "WatchEvent": ["started"], "ReleaseEvent": ["published"], "MemberEvent": ["added"]}


def repo_name(rank: int) -> str:
    """The name of the repo of popularity rank `rank` (1 = most popular); unique per rank."""
    k = rank - 1
    n_owners = len(_OWNERS)
    owner = _OWNERS[k % n_owners] + (str(k // n_owners) if k >= n_owners else "")
    return f"{owner}/{_PROJECTS[(k * 7919) % len(_PROJECTS)]}"


def actor_login(rank: int) -> str:
    k = rank - 1
    n_users = len(_USERS)
    return _USERS[k % n_users] + (str(k // n_users) if k >= n_users else "")


def _github_streams(n: int, seed: int):
    """The per-record random draws that decide type, repo and actor."""
    rng = np.random.default_rng([seed, 1])
    p = np.array([w for _, w in TYPES])
    types = rng.choice(len(TYPES), size=n, p=p / p.sum())
    # Ranks beyond the cap wrap around (mass spread thinly over all ranks)
    # rather than piling up on the last rank.
    repos = (rng.zipf(REPO_ZIPF, size=n) - 1) % _MAX_REPOS + 1
    actors = (rng.zipf(ACTOR_ZIPF, size=n) - 1) % _MAX_ACTORS + 1
    return types, repos, actors


def github_value_counts(n: int, seed: int = 1) -> dict[str, Counter]:
    """How many of github_events(n, seed) have each type, repo.name and actor.login."""
    types, repos, actors = _github_streams(n, seed)
    out = {}
    for key, arr, name in (("type", types, lambda i: TYPES[i][0]), ("repo.name", repos, repo_name),
                           ("actor.login", actors, actor_login)):
        vals, counts = np.unique(arr, return_counts=True)
        out[key] = Counter({name(int(v)): int(c) for v, c in zip(vals, counts)})
    return out


def _message(rng_vals, i: int) -> str:
    r = rng_vals[i]
    if r % 7 == 0:
        return _SPICE[(r // 7) % len(_SPICE)].format(n=r % 5000, u=_USERS[r % len(_USERS)], m=r % 9)
    k = 4 + r % 11
    return " ".join(_WORDS[(r >> (j * 3)) % len(_WORDS)] for j in range(k)).capitalize()


def _hex(x: int, width: int = 40) -> str:
    return (f"{(x * 0x9E3779B97F4A7C15) & ((1 << 64) - 1):016x}" * 3)[:width]


def github_events(n: int, seed: int = 1, first_id: int = 2489651045) -> bytes:
    """n GitHub-like events as NDJSON bytes."""
    types, repos, actors = _github_streams(n, seed)
    rng = np.random.default_rng([seed, 2])
    small = rng.integers(0, 1 << 30, size=(n, 6)).tolist()
    ascii_only = (rng.random(n) < 0.05).tolist()
    has_org = (rng.random(n) < 0.3).tolist()
    types_l, repos_l, actors_l = types.tolist(), repos.tolist(), actors.tolist()
    base_ts = 1420070400  # 2015-01-01T00:00:00Z
    out = []
    dumps = orjson.dumps
    for i in range(n):
        t = TYPES[types_l[i]][0]
        rr, ar = repos_l[i], actors_l[i]
        s = small[i]
        login = actor_login(ar)
        rname = repo_name(rr)
        repo_url = f"https://api.github.com/repos/{rname}"
        ts = base_ts + i // 3
        created = (f"2015-01-{1 + (ts - base_ts) // 86400 % 28:02d}T{(ts // 3600) % 24:02d}:"
                   f"{(ts // 60) % 60:02d}:{ts % 60:02d}Z")
        ev = {"id": str(first_id + i), "type": t,
              "actor": {"id": 10000 + ar, "login": login, "display_login": login, "gravatar_id": "",
                        "url": f"https://api.github.com/users/{login}",
                        "avatar_url": f"https://avatars.githubusercontent.com/u/{10000 + ar}?"},
              "repo": {"id": 20000000 + rr, "name": rname, "url": repo_url}}
        if t == "PushEvent":
            commits = []
            for c in range(_COMMITS[s[0] % 20]):
                sha = _hex(s[1] + c)
                commits.append({"sha": sha, "author": {"email": f"{login}@users.noreply.github.com",
                                                       "name": _NAMES[(s[2] + c) % len(_NAMES)]},
                                "message": _message(s, (3 + c) % 6), "distinct": True,
                                "url": f"{repo_url}/commits/{sha}"})
            ev["payload"] = {"push_id": 536000000 + i, "size": len(commits), "distinct_size": len(commits),
                             "ref": "refs/heads/" + ("master" if s[4] % 4 else f"feature-{s[4] % 97}"),
                             "head": commits[-1]["sha"], "before": _hex(s[5]), "commits": commits}
        elif t in ("CreateEvent", "DeleteEvent"):
            ref_type = ("branch", "tag", "repository")[s[0] % 3]
            ev["payload"] = {"ref": None if ref_type == "repository" else f"v{s[1] % 10}.{s[2] % 20}",
                             "ref_type": ref_type, "pusher_type": "user"}
            if t == "CreateEvent":
                ev["payload"].update(master_branch="master", description=_message(s, 3))
        elif t in ("IssuesEvent", "IssueCommentEvent", "PullRequestEvent", "PullRequestReviewCommentEvent"):
            number = 1 + s[1] % 3000
            kind = "pulls" if t.startswith("Pull") else "issues"
            item = {"url": f"{repo_url}/{kind}/{number}", "id": 50000000 + s[2] % 10**7, "number": number,
                    "title": _message(s, 3), "user": {"login": login, "id": 10000 + ar, "type": "User"},
                    "state": ("open", "closed")[s[4] % 2], "comments": s[5] % 40,
                    "created_at": created, "body": _message(s, 5) + "\n\n" + _message(s, 4)}
            ev["payload"] = {"action": _ACTIONS[t][s[0] % len(_ACTIONS[t])],
                             ("pull_request" if kind == "pulls" else "issue"): item}
            if t.endswith("CommentEvent"):
                ev["payload"]["comment"] = {"id": 70000000 + s[5], "body": _message(s, 0),
                                            "user": {"login": actor_login(1 + s[3] % 1000)}}
        elif t == "ForkEvent":
            fork = f"{login}/{rname.split('/')[1]}"
            ev["payload"] = {"forkee": {"id": 30000000 + i, "name": rname.split("/")[1], "full_name": fork,
                                        "owner": {"login": login, "id": 10000 + ar}, "private": False,
                                        "html_url": f"https://github.com/{fork}", "fork": True,
                                        "description": _message(s, 3), "stargazers_count": s[4] % 100}}
        elif t == "GollumEvent":
            ev["payload"] = {"pages": [{"page_name": "Home", "title": _message(s, 3), "action": "edited",
                                        "sha": _hex(s[1])}]}
        elif t == "ReleaseEvent":
            ev["payload"] = {"action": "published", "release": {"tag_name": f"v{s[1] % 5}.{s[2] % 30}.0",
                                                                "name": _message(s, 3), "body": _message(s, 4)}}
        elif t == "MemberEvent":
            ev["payload"] = {"action": "added", "member": {"login": actor_login(1 + s[3] % 5000)}}
        elif t == "CommitCommentEvent":
            ev["payload"] = {"comment": {"commit_id": _hex(s[1]), "body": _message(s, 3), "line": s[2] % 500}}
        else:  # WatchEvent, PublicEvent
            ev["payload"] = {"action": "started"} if t == "WatchEvent" else {}
        ev["public"] = True
        ev["created_at"] = created
        if has_org[i]:
            org = rname.split("/")[0]
            ev["org"] = {"id": 40000 + rr % 100000, "login": org, "gravatar_id": "",
                         "url": f"https://api.github.com/orgs/{org}",
                         "avatar_url": f"https://avatars.githubusercontent.com/u/{40000 + rr % 100000}?"}
        if ascii_only[i]:
            out.append(json.dumps(ev, ensure_ascii=True, separators=(",", ":")).encode())
        else:
            out.append(dumps(ev))
    out.append(b"")
    return b"\n".join(out)


# --- zeek_logs ----------------------------------------------------------------

_Z_BASE_US = 1521911720 * 10**6  # 2018-03-24T17:15:20Z, the first second of the capture
_Z_GAP_US = 12_000  # mean gap between records (~83 a second); each record has its own slot
_Z_BLOCK = 1024  # records per seeded block: a shorter stream is a prefix of a longer one
_Z_QUERY_ZIPF, _Z_MAX_QUERIES = 1.5, 4000
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_Z_B62_CHARS = np.array(list(_B62))
_Z_NAMES = ["ise.wrccdc.org", "*", "videosearch.ubuntu.com", "arena1.wrccdc.cpp.edu", "docs.google.com",
            "snozberry.oompa.loompa", "store.oompa.loompa", "sweettarts.oompa.loompa", "detectportal.firefox.com",
            "titan.oompa.loompa", "daisy.ubuntu.com", "www.google.com", "wpad.jerry.land", "forums.jerry.land",
            "_ldap._tcp.dc._msdcs.factory.oompa.loompa", "time.windows.com", "ocsp.digicert.com",
            "xn--bcher-kva.example", "safebrowsing.googleapis.com", "1.0.0.10.in-addr.arpa"]
_Z_HOSTS = "www mail pc-helen pc-jerry ftp vpn db wiki dc01 files printer cam git".split()
_Z_DOMAINS = "jerry.land oompa.loompa factory.oompa.loompa wrccdc.org cpp.edu example.com".split()
_Z_QTYPES = [("A", 1)] * 13 + [("AAAA", 28)] * 5 + [("PTR", 12), ("SRV", 33)]
_Z_TLS = ["TLSv12"] * 6 + ["TLSv10", "TLSv13"]
_Z_CIPHERS = ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
              "TLS_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA"]
_Z_VALIDATION = ["ok", "unable to get local issuer certificate", "self signed certificate in certificate chain"]
_Z_WEIRD = ["TCP_ack_underflow_or_misorder", "bad_TCP_checksum", "data_before_established", "possible_split_routing",
            "above_hole_data_without_any_acks", "inappropriate_FIN", "truncated_tcp_payload", "dns_unmatched_reply"]
_Z_FAILURES = ["Binpac exception: binpac exception: string mismatch at rdp-protocol.pac:81: \nexpected pattern: "
               "\"Cookie: mstshash\\=\"\nactual data: \"\\x01\"", "not a http request line",
               "Invalid version late in TLS connection. Packet reported version: 0", "unexpected end of data"]
_Z_SUBJECT = ("unstructuredName=1315656901\\,564d7761726520496e632e,CN=localhost.localdomain,O=VMware\\, Inc,"
              "L=Palo Alto,ST=California,C=US")


def _b62(x: int, width: int) -> str:
    chars = []
    for _ in range(width):
        x, d = divmod(x, 62)
        chars.append(_B62[d])
    return "".join(chars)


@functools.lru_cache(maxsize=4096)
def _iso_second(s: int) -> str:
    t = time.gmtime(s)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def _iso(us: int) -> str:
    s, frac = divmod(us, 10**6)
    return f"{_iso_second(s)}.{frac:06d}Z"


def _host(k: int) -> str:
    """Internal host k: a handful of subnets, as in a competition network."""
    return f"10.{(47, 47, 47, 128, 164, 224, 0)[k % 7]}.{(k * 37) % 29}.{(k * 101) % 250 + 1}"


_Z_SERVERS = {53: ["10.0.0.100", "10.47.26.25", "10.10.6.1", "8.8.8.8"],
              443: ["10.47.8.208", "134.71.3.16", "10.47.21.80", "172.217.5.110", "10.47.3.200"]}


def _server(port: int, u: float) -> str:
    """A responder for `port`, skewed: the first of its pool answers most."""
    pool = _Z_SERVERS.get(port)
    k = int(u ** 4 * 40)
    return pool[k] if pool and k < len(pool) else _host(port * 7 + k)


def _query(rank: int) -> str:
    if rank < len(_Z_NAMES):
        return _Z_NAMES[rank]
    k = rank - len(_Z_NAMES)
    return f"{_Z_HOSTS[k % len(_Z_HOSTS)]}{k // len(_Z_HOSTS)}.{_Z_DOMAINS[(k * 7) % len(_Z_DOMAINS)]}"


def _dns(rec: dict, r: list, u: list, rank: int) -> None:
    name = _query(rank)
    nbstat = name == "*"
    rec["proto"] = "tcp" if r[3] % 50 == 0 else "udp"
    rec["trans_id"] = r[3] % 65536
    v = r[4] % 100
    replied = v >= 18
    if replied:
        rec["rtt"] = u[2] * u[2] * 0.02
    if r[2] % 1000 > 1:
        rec["query"] = name
    elif r[2] % 1000 == 1:
        rec["query"] = None
    qtype = ("NBSTAT", 32) if nbstat else _Z_QTYPES[r[5] % len(_Z_QTYPES)]
    rec.update(qclass=1, qclass_name="C_INTERNET", qtype=qtype[1], qtype_name=qtype[0])
    nx_per_mille = 500 if rank == 2 else 400 if rank % 6 == 5 else 30
    rcode = 3 if r[6] % 1000 < nx_per_mille else 2 if r[6] % 1000 == 999 else 0
    if replied:
        rec.update(rcode=rcode, rcode_name=("NOERROR", "", "SERVFAIL", "NXDOMAIN")[rcode])
    rec.update(AA=r[7] % 10 == 0, TC=False, RD=r[7] % 10 != 1, RA=replied and r[7] % 10 != 2, Z=0)
    if replied and rcode == 0 and v >= 26:
        count = 1 + (r[1] >> 8) % 3
        if qtype[0] == "PTR":
            answers = [f"{_Z_HOSTS[(r[1] + j) % len(_Z_HOSTS)]}.{_Z_DOMAINS[j % 3]}" for j in range(count)]
        elif qtype[0] == "AAAA":
            answers = [f"2001:db8::{(r[1] >> j) % 65536:x}" for j in range(count)]
        else:
            answers = [_server(443, ((r[1] >> (4 * j)) % 1000) / 1000) for j in range(count)]
        if r[5] % 3 == 0:
            answers.insert(0, f"{name.split('.')[0]}.cdn.{_Z_DOMAINS[r[5] % len(_Z_DOMAINS)]}")
        rec["answers"] = answers
        rec["TTLs"] = [float((r[0] >> (3 * j)) % 86400) for j in range(len(answers))]
    rec["rejected"] = replied and rcode != 0 and r[7] % 2 == 0


def _ssl(rec: dict, r: list, u: list) -> None:
    v = r[3] % 100
    if v >= 55:
        rec.update(version=_Z_TLS[r[4] % len(_Z_TLS)], cipher=_Z_CIPHERS[r[4] % len(_Z_CIPHERS)])
        if v >= 95:
            rec["curve"] = ("secp256r1", "x25519")[r[5] % 2]
        if v < 80 or v >= 95:
            rec["server_name"] = _query(int(u[2] ** 3 * 40) + (r[5] % 2))
    rec.update(resumed=r[6] % 3 == 0, established=r[6] % 7 != 0,
               ssl_history=("CsiI", "CsxknGIi", "Cs", "CsxkniGIi")[r[6] % 4])
    if v >= 80:
        rec.update(cert_chain_fps=[_hex(r[7] + j, 64) for j in range(1 + r[7] % 2)], client_cert_chain_fps=[],
                   validation_status=_Z_VALIDATION[r[5] % len(_Z_VALIDATION)])


def _conn_fields(r, u):
    return {"cause": "violation", "analyzer_kind": "protocol",
            "analyzer_name": ("RDP", "SSL", "HTTP", "SMTP", "DNS")[r[3] % 5],
            "failure_reason": _Z_FAILURES[r[4] % len(_Z_FAILURES)]}


# _path: (records per 100,000, responder port(s) or None for a kind that is no
# connection, longest delay of ts before _write_ts in µs, fields) -- the
# weights are those of the WRCCDC 2018 logs; the ports' first entry is the
# most common one.
_ZEEK_KINDS = {
    "dns": (33800, (53, 53, 53, 5353), 1_000, None),
    "ssl": (31200, (443, 443, 443, 8443, 993, 3389), 10_000, None),
    "weird": (15300, (80, 443, 445, 3389, 22, 8080, 0), 0, lambda r, u: {
        "name": _Z_WEIRD[r[3] % len(_Z_WEIRD)], "notice": False, "peer": "zeek", "source": "TCP"}),
    "analyzer": (10400, (3389, 443, 80, 25, 0), 0, _conn_fields),
    "rdp": (2600, (3389,), 200_000, lambda r, u: {
        "result": ("encrypted", "Success")[r[3] % 2], "security_protocol": ("HYBRID", "RDP", "SSL")[r[4] % 3],
        "cert_count": r[5] % 3}),
    "syslog": (1500, (514,), 0, lambda r, u: {
        "proto": "udp", "facility": ("LOCAL0", "DAEMON", "AUTH")[r[3] % 3],
        "severity": ("INFO", "NOTICE", "ERR")[r[4] % 3],
        "message": f"1 2018-03-24T08:59:37-07:00 PC-helen.jerry.land EvntSLog - - - @cee: {{\"id\": "
                   f"\"{r[5] % 8000}\", \"msg\": \"The service entered the \\\"stopped\\\" state.\", "
                   f"\"user\": \"N\\\\A\"}}"}),
    "known_services": (1000, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "port_num": (80, 443, 22, 3389, 445)[r[4] % 5], "port_proto": "tcp",
        "service": [("HTTP", "SSL", "SSH", "RDP", "SMB")[r[4] % 5]]}),
    "ocsp": (830, None, 0, lambda r, u: {
        "id": "F" + _b62(r[3] * r[4], 17), "hashAlgorithm": "sha1", "issuerNameHash": _hex(r[5]).upper(),
        "issuerKeyHash": _hex(r[6]).upper(), "serialNumber": _hex(r[7], 32).upper(),
        "certStatus": "good" if r[3] % 50 else "revoked", "thisUpdate": "2018-03-24T11:46:33.000000Z",
        "nextUpdate": "2018-03-31T11:01:33.000000Z"}),
    "smtp": (750, (25, 587, 587), 5_000_000, lambda r, u: {
        "trans_depth": 1 + r[3] % 2, "helo": _host(r[4] % 60), "last_reply": "220 2.0.0 SMTP server ready",
        "path": [_host(r[5] % 60), _host(r[4] % 60)], "tls": r[6] % 3 != 0, "fuids": [], "is_webmail": False}),
    "ntp": (570, (123,), 0, lambda r, u: {
        "version": 3 + r[3] % 2, "mode": 3 + r[4] % 2, "stratum": r[5] % 4, "poll": float(1 << (r[5] % 7)),
        "precision": u[2] * 1e-6, "root_delay": 0.0, "root_disp": u[2] / 8, "ref_id": "\\x00\\x00\\x00\\x00",
        "ref_time": "1970-01-01T00:00:00.000000Z", "xmt_time": "2018-03-24T17:15:13.139938Z", "num_exts": 0}),
    "loaded_scripts": (320, None, 0, lambda r, u: {
        "name": f"/opt/zeek/share/zeek/base/{_WORDS[r[3] % len(_WORDS)]}/{_WORDS[r[4] % len(_WORDS)]}.zeek"}),
    "ntlm": (270, (445,), 10_000, lambda r, u: {
        "server_nb_computer_name": "SNOZBERRY", "server_dns_computer_name": "Snozberry.factory.oompa.loompa",
        "server_tree_name": "factory.oompa.loompa", "success": r[3] % 4 != 0}),
    "smb_mapping": (250, (445,), 1_000, lambda r, u: {
        "path": f"\\\\{_host(r[3] % 60)}\\{('ADMIN$', 'IPC$', 'C$')[r[4] % 3]}",
        "share_type": ("DISK", "PIPE")[r[4] % 2]}),
    "software": (240, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "software_type": "HTTP::BROWSER", "name": "MSIE", "version.major": 6 + r[4] % 6,
        "version.minor": 0, "unparsed_version": "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 5.1)"}),
    "x509": (220, None, 0, lambda r, u: {
        "fingerprint": _hex(r[3], 64), "certificate.version": 3, "certificate.serial": _hex(r[4], 12).upper(),
        "certificate.subject": _Z_SUBJECT, "certificate.issuer": "O=VMware Installer",
        "certificate.not_valid_before": "2011-09-10T12:15:02.000000Z",
        "certificate.not_valid_after": "2023-03-11T12:15:02.000000Z", "certificate.key_length": 2048}),
    "modbus": (170, (502,), 0, lambda r, u: {
        "tid": r[3] % 65536, "unit": r[4] % 256, "func": ("READ_COILS", "unknown-100")[r[5] % 2],
        "pdu_type": ("REQ", "RESP")[r[6] % 2]}),
    "known_hosts": (160, None, 0, lambda r, u: {"host": _host(r[3] % 400)}),
    "notice": (130, (443, 22, 3389), 0, lambda r, u: {
        "proto": "tcp", "note": ("SSL::Invalid_Server_Cert", "Scan::Port_Scan")[r[3] % 2],
        "msg": "SSL certificate validation failed with (unable to get local issuer certificate)",
        "sub": _Z_SUBJECT, "actions": ["Notice::ACTION_LOG"], "email_dest": [], "suppress_for": 3600.0}),
    "ftp": (60, (21,), 1_000_000, lambda r, u: {
        "user": "anonymous", "password": "nessus@nessus.org", "command": ("PASV", "USER", "RETR")[r[3] % 3],
        "reply_code": 227, "reply_msg": "Entering Passive Mode (172,20,0,80,200,63).",
        "data_channel.passive": True, "data_channel.resp_p": 1024 + r[4] % 60000}),
    "dce_rpc": (50, (135, 1030), 1_000, lambda r, u: {
        "rtt": u[2] / 1000, "named_pipe": "1030", "endpoint": "samr", "operation": "SamrConnect2"}),
    "dpd": (50, (80, 8080, 0), 0, lambda r, u: {
        "proto": "tcp", "analyzer": "HTTP", "failure_reason": "not a http request line"}),
    "snmp": (41, (161,), 60_000_000, lambda r, u: {
        "duration": u[2] / 100, "version": ("1", "2c")[r[3] % 2], "community": "internal",
        "get_requests": r[4] % 5, "get_bulk_requests": 0, "get_responses": r[4] % 5, "set_requests": 0}),
    "known_certs": (22, None, 0, lambda r, u: {
        "host": _host(r[3] % 60), "port_num": 443, "subject": _Z_SUBJECT, "issuer_subject": "O=VMware Installer",
        "serial": _hex(r[4], 12).upper()}),
    "ssh": (14, (22,), 1_000_000, lambda r, u: {
        "version": 2, "auth_success": r[3] % 2 == 0, "auth_attempts": 1 + r[4] % 3, "client": "SSH-2.0-OpenSSH_7.6",
        "server": "SSH-2.0-OpenSSH_7.4p1 Raspbian-10+deb9u3", "cipher_alg": "chacha20-poly1305@openssh.com"}),
    "pe": (13, None, 100_000, lambda r, u: {
        "id": "F" + _b62(r[3] * r[4], 17), "machine": "I386", "compile_ts": "2010-07-12T21:46:18.000000Z",
        "os": "Windows 95 or NT 4.0", "is_exe": True, "is_64bit": r[5] % 2 == 0, "uses_aslr": False,
        "section_names": [".text", ".data", ".rdata", ".bss", ".idata"][:2 + r[6] % 4]}),
    "smb_files": (8, (445,), 1_000, lambda r, u: {"action": "SMB::FILE_OPEN", "name": "\\svcctl", "size": 0}),
    "kerberos": (7, (88,), 5_000_000, lambda r, u: {
        "request_type": ("AS", "TGS")[r[3] % 2], "client": "/NM", "service": "krbtgt/NM",
        "till": "1970-01-01T00:00:00.000000Z", "forwardable": True, "renewable": r[4] % 2 == 0}),
    "stats": (4, None, 0, lambda r, u: {
        "peer": "zeek", "mem": 110 + r[3] % 50, "pkts_proc": r[4], "bytes_recv": r[5], "events_proc": r[6] % 10**6,
        "active_tcp_conns": r[7] % 500}),
    "capture_loss": (3, None, 0, lambda r, u: {
        "ts_delta": 60.0, "peer": "zeek", "gaps": r[3] % 1000, "acks": r[4] % 200000, "percent_lost": u[2]}),
    "rfb": (3, (5900,), 5_000_000, lambda r, u: {
        "client_major_version": "003", "client_minor_version": "008", "server_major_version": "003",
        "server_minor_version": "008", "authentication_method": "None"}),
    "packet_filter": (2, None, 0, lambda r, u: {
        "node": "zeek", "filter": "ip or not ip", "init": True, "success": True}),
    "ldap_search": (2, (389,), 2_000, lambda r, u: {
        "message_id": r[3] % 100, "scope": "base", "deref_aliases": "never", "result_count": 1,
        "result": "success", "filter": "(objectClass=*)"}),
}
_Z_PATHS = list(_ZEEK_KINDS)
_Z_P = np.array([k[0] for k in _ZEEK_KINDS.values()], dtype=float)
_Z_P /= _Z_P.sum()


def _zeek_block(seed: int, block: int, m: int, first: int) -> list[bytes]:
    rng = np.random.default_rng([seed, 3, block])
    kinds = rng.choice(len(_Z_PATHS), size=_Z_BLOCK, p=_Z_P).tolist()
    ints = rng.integers(0, 1 << 31, size=(_Z_BLOCK, 8)).tolist()
    unit = rng.random((_Z_BLOCK, 3)).tolist()
    ranks = ((rng.zipf(_Z_QUERY_ZIPF, size=_Z_BLOCK) - 1) % _Z_MAX_QUERIES).tolist()
    jitter = rng.integers(0, _Z_GAP_US, size=_Z_BLOCK).tolist()
    uids = _Z_B62_CHARS[rng.integers(0, 62, size=(_Z_BLOCK, 17))].view("<U17")[:, 0].tolist()
    out = []
    for j in range(m):
        path = _Z_PATHS[kinds[j]]
        _, ports, delay_us, fields = _ZEEK_KINDS[path]
        r, u = ints[j], unit[j]
        write_us = _Z_BASE_US + (first + j) * _Z_GAP_US + jitter[j]
        rec = {"_path": path, "_write_ts": _iso(write_us),
               "ts": _iso(write_us - (r[7] % delay_us if delay_us else 0))}
        if ports is not None:
            port = ports[r[2] % len(ports)]
            if port == 0:  # a scan: common service ports, and now and then an ephemeral one
                port = (22, 80, 443, 8080, 3389)[r[3] % 5] if r[3] % 8 else 1024 + r[4] % 64512
            rec.update({"uid": "C" + uids[j],
                        "id.orig_h": _host(int(u[0] ** 3 * 400)), "id.orig_p": 1024 + r[6] % 64512,
                        "id.resp_h": _server(port, u[1]), "id.resp_p": port})
        if path == "dns":
            _dns(rec, r, u, ranks[j])
        elif path == "ssl":
            _ssl(rec, r, u)
        else:
            rec.update(fields(r, u))
        out.append(orjson.dumps(rec))
    return out


def zeek_logs(n: int, seed: int = 1) -> bytes:
    """n Zeek-like log records as NDJSON bytes, oldest first (`_write_ts` ascends)."""
    out = []
    for block, first in enumerate(range(0, n, _Z_BLOCK)):
        out += _zeek_block(seed, block, min(_Z_BLOCK, n - first), first)
    out.append(b"")
    return b"\n".join(out)


KINDS = {"github_events": github_events, "zeek_logs": zeek_logs}
"""Every generator by name: the `kind` of write()."""


def write(kind: str, n: int, path: str | pathlib.Path, seed: int = 1) -> pathlib.Path:
    """Write KINDS[kind](n, seed) to `path` as NDJSON, gzip-compressed when the
    name ends in .gz (mtime 0, so the file's bytes depend only on the
    arguments). The file appears whole: it is written under a temporary name
    (one per process) and renamed."""
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
