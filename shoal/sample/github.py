"""github_events: GitHub-archive-like events (2015 layout), the benchmarks' workload.

The output of this module is pinned byte for byte (benchmark caches and the
figures recorded in benchmarks/README.md depend on it; tests/test_sample.py
holds hashes): change nothing here that changes a record; add a new kind
instead.
"""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import orjson


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


def _streams(n: int, seed: int):
    """The per-record random draws that decide type, repo and actor."""
    rng = np.random.default_rng([seed, 1])
    p = np.array([w for _, w in TYPES])
    types = rng.choice(len(TYPES), size=n, p=p / p.sum())
    # Ranks beyond the cap wrap around (mass spread thinly over all ranks)
    # rather than piling up on the last rank.
    repos = (rng.zipf(REPO_ZIPF, size=n) - 1) % _MAX_REPOS + 1
    actors = (rng.zipf(ACTOR_ZIPF, size=n) - 1) % _MAX_ACTORS + 1
    return types, repos, actors


def value_counts(n: int, seed: int = 1) -> dict[str, Counter]:
    """How many of github_events(n, seed) have each type, repo.name and actor.login."""
    types, repos, actors = _streams(n, seed)
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


def events(n: int, seed: int = 1, first_id: int = 2489651045) -> bytes:
    """n GitHub-like events as NDJSON bytes."""
    types, repos, actors = _streams(n, seed)
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


