"""Fixtures for the JSON layer of the C core (json.c).

`nj` wraps the shoal_* functions so tests speak Python values; `Trie` builds a
shoal_trie from paths; `json_doc` and `dump_json` generate JSON values and
serialize them with random formatting (whitespace, escapes, duplicate keys).
The records (`generated`, `real_data`, `testsuite_files`) come from
tests/conftest.py.
"""
from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import strategies as st

from shoal._native import ffi, lib

TYPE_NAMES = {
    lib.SHOAL_T_MISSING: "missing",
    lib.SHOAL_T_NULL: "null",
    lib.SHOAL_T_FALSE: "false",
    lib.SHOAL_T_TRUE: "true",
    lib.SHOAL_T_NUMBER: "number",
    lib.SHOAL_T_STRING: "string",
    lib.SHOAL_T_ARRAY: "array",
    lib.SHOAL_T_OBJECT: "object",
}

_MISSING = object()


def python_type(value) -> int:
    """The SHOAL_T_* of a value as orjson loads it (_MISSING for an absent path)."""
    if value is _MISSING:
        return lib.SHOAL_T_MISSING
    if value is None:
        return lib.SHOAL_T_NULL
    if value is True:
        return lib.SHOAL_T_TRUE
    if value is False:
        return lib.SHOAL_T_FALSE
    if isinstance(value, (int, float)):
        return lib.SHOAL_T_NUMBER
    if isinstance(value, str):
        return lib.SHOAL_T_STRING
    if isinstance(value, list):
        return lib.SHOAL_T_ARRAY
    return lib.SHOAL_T_OBJECT


def follow(doc, path):
    """Value at path (str keys, int indexes) in a loaded document, or MISSING."""
    value = doc
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return _MISSING
        elif not isinstance(value, dict) or step not in value:
            return _MISSING
        value = value[step]
    return value


class Trie:
    """A shoal_trie for `paths` (tuples of str keys and int element numbers).

    Slots are numbered in depth-first preorder so that every subtree owns one
    contiguous slot range, as shoal.h requires; `slot_of[path]` is a path's slot.
    """

    def __init__(self, paths):
        children: list[dict] = [{}]
        terminal = [False]
        for path in paths:
            node = 0
            for step in path:
                edge = ("i", step) if isinstance(step, int) else ("k", step.encode())
                if edge not in children[node]:
                    children.append({})
                    terminal.append(False)
                    children[node][edge] = len(children) - 1
                node = children[node][edge]
            terminal[node] = True

        n = len(children)
        slot = [-1] * n
        lo = [0] * n
        hi = [0] * n
        counter = 0
        stack = [(0, False)]
        while stack:  # iterative preorder; exits record slot_hi
            node, leaving = stack.pop()
            if leaving:
                hi[node] = counter
                continue
            lo[node] = counter
            if terminal[node]:
                slot[node] = counter
                counter += 1
            stack.append((node, True))
            for child in reversed(list(children[node].values())):
                stack.append((child, False))

        keys = bytearray()
        edges = []
        first_edge = [0] * n
        for node in range(n):
            first_edge[node] = len(edges)
            for (kind, key), child in children[node].items():
                if kind == "i":
                    edges.append((key, lib.SHOAL_EDGE_INDEX, child))
                else:
                    edges.append((len(keys), len(key), child))
                    keys += key

        self._nodes = ffi.new("shoal_trie_node[]", n)
        for i in range(n):
            self._nodes[i].slot = slot[i]
            self._nodes[i].slot_lo = lo[i]
            self._nodes[i].slot_hi = hi[i]
            self._nodes[i].first_edge = first_edge[i]
            self._nodes[i].n_edges = len(children[i])
        self._edges = ffi.new("shoal_trie_edge[]", max(1, len(edges)))
        for i, (off, klen, child) in enumerate(edges):
            self._edges[i].key_off = off
            self._edges[i].key_len = klen
            self._edges[i].child = child
        self._keys = ffi.new("char[]", bytes(keys) or b"\0")
        self.c = ffi.new("shoal_trie *")
        self.c.nodes = self._nodes
        self.c.n_nodes = n
        self.c.edges = self._edges
        self.c.n_edges = len(edges)
        self.c.keys = self._keys
        self.c.n_slots = counter
        self.n_slots = counter
        self.slot_of = {}
        for path in paths:
            node = 0
            for step in path:
                edge = ("i", step) if isinstance(step, int) else ("k", step.encode())
                node = children[node][edge]
            self.slot_of[tuple(path)] = slot[node]


class NativeJSON:
    """Python-valued wrappers over json.c."""

    MISSING = _MISSING

    def parse(self, data: bytes, trie: Trie | None = None):
        """(status, err_off, slots) with slots as (start, len, type, flags) tuples."""
        err = ffi.new("size_t *")
        if trie is None:
            rc = lib.shoal_parse(ffi.from_buffer(data), len(data), ffi.NULL, ffi.NULL, err)
            return rc, err[0], []
        slots = ffi.new("shoal_slot[]", max(1, trie.n_slots))
        rc = lib.shoal_parse(ffi.from_buffer(data), len(data), trie.c, slots, err)
        out = [(s.start, s.len, s.type, s.flags) for s in slots[0 : trie.n_slots]]
        return rc, err[0], out

    def canon(self, text: bytes, type_: int, cap: int | None = None):
        """Canonical bytes, or the negative status."""
        cap = len(text) + 32 if cap is None else cap
        dst = ffi.new("char[]", max(1, cap))
        n = lib.shoal_canon(ffi.from_buffer(text), len(text), type_, dst, cap)
        return n if n < 0 else ffi.buffer(dst, n)[:]

    def hash(self, psf_id: int, canon: bytes) -> int:
        return lib.shoal_hash(psf_id, ffi.from_buffer(canon), len(canon))

    def crc32c(self, data: bytes, crc: int = 0) -> int:
        return lib.shoal_crc32c(crc, ffi.from_buffer(data), len(data))

    def frame_ndjson(self, data: bytes, final: bool, first_line: int, cap: int):
        """(status, spans as (start, len, line, status), consumed)."""
        out = ffi.new("shoal_span[]", max(1, cap))
        n_out = ffi.new("size_t *")
        consumed = ffi.new("size_t *")
        rc = lib.shoal_frame_ndjson(ffi.from_buffer(data), len(data), int(final), first_line,
                                    out, cap, n_out, consumed)
        spans = [(s.start, s.len, s.line, s.status) for s in out[0 : n_out[0]]]
        return rc, spans, consumed[0]

    def new_array_state(self):
        return ffi.new("shoal_array_state *")

    def frame_array(self, state, data: bytes, final: bool, cap: int):
        """(status, spans as (start, len, line, status), consumed, err_off)."""
        out = ffi.new("shoal_span[]", max(1, cap))
        n_out = ffi.new("size_t *")
        consumed = ffi.new("size_t *")
        err = ffi.new("size_t *")
        rc = lib.shoal_frame_array(state, ffi.from_buffer(data), len(data), int(final), out, cap,
                                   n_out, consumed, err)
        spans = [(s.start, s.len, s.line, s.status) for s in out[0 : n_out[0]]]
        return rc, spans, consumed[0], err[0]


@pytest.fixture(scope="session")
def nj() -> NativeJSON:
    return NativeJSON()


from oracle import orjson_accepts  # noqa: E402,F401  (one definition, shared)


# ---- generated JSON ----------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_keys = st.text(max_size=6) | st.sampled_from(["a", "b", "id", "x.y", "é", "\u2028", "😀", ""])
json_doc = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(json_keys, inner, max_size=5),
    max_leaves=25,
)

_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def dump_string(s: str, rng: random.Random) -> str:
    """A JSON string literal for s, escaping at random (\\u, surrogate pairs, \\/)."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch in _SHORT_ESCAPES and rng.random() < 0.7:
            out.append(_SHORT_ESCAPES[ch])
        elif cp < 0x20 or ch in '"\\' or rng.random() < 0.1:
            if cp >= 0x10000:
                v = cp - 0x10000
                hi, lo = 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)
                out.append(f"\\u{hi:04x}\\u{lo:04X}" if rng.random() < 0.5 else f"\\u{hi:04X}\\u{lo:04x}")
            else:
                out.append(f"\\u{cp:04x}" if rng.random() < 0.5 else f"\\u{cp:04X}")
        elif ch == "/" and rng.random() < 0.5:
            out.append("\\/")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _ws(rng: random.Random) -> str:
    return "" if rng.random() < 0.6 else "".join(rng.choice(" \t\r\n") for _ in range(rng.randint(1, 3)))


def dump_json(value, rng: random.Random, duplicates: bool = True) -> str:
    """Serialize with random whitespace and escapes; objects may repeat a key
    earlier with a decoy value (the last occurrence is the real one)."""
    if isinstance(value, dict):
        items = [(dump_string(k, rng), dump_json(v, rng, duplicates)) for k, v in value.items()]
        if duplicates and items and rng.random() < 0.2:
            k = rng.choice(list(value))
            items.insert(0, (dump_string(k, rng), dump_json(rng.choice([1, "decoy", [2], {"z": 3}]), rng)))
        body = ",".join(f"{_ws(rng)}{k}{_ws(rng)}:{_ws(rng)}{v}{_ws(rng)}" for k, v in items)
        return "{" + (body or _ws(rng)) + "}"
    if isinstance(value, list):
        body = ",".join(f"{_ws(rng)}{dump_json(v, rng, duplicates)}{_ws(rng)}" for v in value)
        return "[" + (body or _ws(rng)) + "]"
    if isinstance(value, str):
        return dump_string(value, rng)
    return orjson.dumps(value).decode() if not isinstance(value, int) or isinstance(value, bool) or abs(value) < 2**63 else str(value)
