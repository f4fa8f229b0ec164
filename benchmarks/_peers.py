"""The peers shoal is measured beside, and the PSF sets they all index.

A PSF here is one definition with three spellings: the JMESPath expression
shoal registers, the SQLite expression an index is built on, and a Python
function over the orjson-parsed record (the floor of doing the same work
in Python).

  orjson_floor  orjson.loads of every line plus extracting the PSF fields
  SQLite        stdlib sqlite3, WAL, one table with the raw JSON text, one
                expression index per PSF on json_extract(...), created before
                the load; the load is executemany in one transaction
"""
from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson


def _get(o: Any, *path: str | int) -> Any:
    for k in path:
        if isinstance(k, int):
            o = o[k] if isinstance(o, list) and -len(o) <= k < len(o) else None
        else:
            o = o.get(k) if isinstance(o, dict) else None
        if o is None:
            return None
    return o


@dataclass(frozen=True)
class PSFSpec:
    name: str
    jmespath: str
    sql: str  # an SQLite expression over the column `doc`
    extract: Callable[[Any], Any]


def _proj(name: str, *path: str | int) -> PSFSpec:
    """A projection PSF on a key path."""
    jp, sp = [], "$"
    for k in path:
        if isinstance(k, int):
            jp[-1] += f"[{k}]"
            sp += f"[{k}]"
        elif "." in k:
            jp.append(f'"{k}"')
            sp += f'."{k}"'
        else:
            jp.append(k)
            sp += f".{k}"
    return PSFSpec(name, ".".join(jp), f"json_extract(doc, '{sp}')", lambda o: _get(o, *path))


def _eq(name: str, key: str, value: str) -> PSFSpec:
    """A predicate PSF: key == 'value'."""
    return PSFSpec(name, f"{key} == '{value}'", f"json_extract(doc, '$.{key}') = '{value}'",
                   lambda o: o.get(key) == value if isinstance(o, dict) else False)


def _gt(name: str, path: tuple[str, ...], value: int) -> PSFSpec:
    """A predicate PSF: path > value (numbers only)."""
    def f(o: Any) -> bool:
        v = _get(o, *path)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > value
    return PSFSpec(name, f"{'.'.join(path)} > `{value}`", f"json_extract(doc, '$.{'.'.join(path)}') > {value}", f)


_GITHUB = [_proj("type", "type"), _proj("repo", "repo", "name"), _proj("actor", "actor", "login"),
           _proj("org", "org", "login"), _proj("action", "payload", "action"),
           _proj("ref_type", "payload", "ref_type"), _proj("author", "payload", "commits", 0, "author", "name"),
           _eq("push", "type", "PushEvent")]
_ZEEK = [_proj("path", "_path"), _proj("query", "query"), _proj("resp_p", "id.resp_p"),
         _proj("orig_h", "id.orig_h"), _proj("resp_h", "id.resp_h"), _proj("proto", "proto"),
         _proj("qtype", "qtype_name"), _eq("ssl", "_path", "ssl")]
_TWITTER = [_proj("lang", "lang"), _proj("user", "user", "screen_name"), _proj("result", "metadata", "result_type"),
            _proj("user_lang", "user", "lang"), _proj("reply_to", "in_reply_to_screen_name"),
            _proj("rt_user", "retweeted_status", "user", "screen_name"), _proj("source", "source"),
            _gt("popular", ("user", "followers_count"), 1000)]

PSF_SETS = {"events": _GITHUB, "github": _GITHUB, "zeek": _ZEEK, "twitter": _TWITTER}


def psfs(dataset: str, k: int) -> list[PSFSpec]:
    """The first k PSFs of a dataset's list (k in 1..8)."""
    return PSF_SETS[dataset][:k]


def register(store, specs: list[PSFSpec]) -> None:
    for s in specs:
        store.register_psf(s.name, s.jmespath)


def orjson_floor(lines: list[bytes], specs: list[PSFSpec]) -> int:
    """Parse every line with orjson and extract each PSF's value: the least a
    Python ingest path does. Returns the record count."""
    fns = [s.extract for s in specs]
    loads = orjson.loads
    out = []
    append = out.append
    if len(fns) == 1:
        f = fns[0]
        for line in lines:
            append(f(loads(line)))
    else:
        for line in lines:
            o = loads(line)
            append([f(o) for f in fns])
    return len(out)


class SQLitePeer:
    """One SQLite database file holding records as raw JSON text."""

    def __init__(self, path: Path, specs: list[PSFSpec]):
        self.path = Path(path)
        self.specs = {s.name: s for s in specs}
        self.con: sqlite3.Connection | None = None

    def create(self) -> None:
        """A fresh database: WAL, the table, an index per PSF (before the load)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        con = self.con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
        for s in self.specs.values():
            con.execute(f"CREATE INDEX idx_{s.name} ON events({s.sql})")

    def load(self, lines: list[bytes]) -> int:
        """Insert every record (decoded to text: SQLite reads a BLOB as JSONB)
        in one transaction with executemany."""
        con = self.con
        con.execute("BEGIN")
        con.executemany("INSERT INTO events(doc) VALUES (?)", ((line.decode(),) for line in lines))
        con.execute("COMMIT")
        return len(lines)

    def settle(self) -> None:
        """fsync the database files, so their writeback does not slow whatever runs next."""
        for suffix in ("", "-wal"):
            try:
                fd = os.open(str(self.path) + suffix, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def query(self, psf: str, value: Any) -> list[str]:
        """The records (raw JSON text) whose PSF expression equals value, by its index."""
        return self.con.execute(f"SELECT doc FROM events WHERE {self.specs[psf].sql} = ?", (value,)).fetchall()

    def query_all(self, conditions: list[tuple[str, Any]]) -> list[str]:
        where = " AND ".join(f"{self.specs[p].sql} = ?" for p, _ in conditions)
        return self.con.execute(f"SELECT doc FROM events WHERE {where}", [v for _, v in conditions]).fetchall()

    def uses_index(self, psf: str) -> bool:
        plan = self.con.execute(f"EXPLAIN QUERY PLAN SELECT doc FROM events WHERE {self.specs[psf].sql} = ?",
                                ("x",)).fetchall()
        return any("USING INDEX" in str(row) for row in plan)

    def size_bytes(self) -> int:
        return sum(Path(str(self.path) + s).stat().st_size for s in ("", "-wal") if Path(str(self.path) + s).exists())

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None
