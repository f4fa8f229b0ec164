"""Compile native PSF expressions into one `shoal_psfset` for the C core.

Layout (see shoal.h, "PSF programs"):

* trie: node 0 is the record itself. Each distinct path any program reads
  gets one slot. Nodes and slots are numbered in one depth-first pre-order
  walk, so a node's own slot and all slots below it form the contiguous range
  [slot_lo, slot_hi) that shoal_parse resets when it enters the node. A
  node's edges are contiguous: object keys first, sorted by their unescaped
  UTF-8 bytes, then array indexes in ascending order (key_len ==
  SHOAL_EDGE_INDEX, key_off == the index).
* programs: one postfix program per PSF, in `items` order; literals are
  deduplicated into `lits` with their canonical bytes in `lit_pool`.

Every cffi object the C structs point into is kept on the instance: the set is
valid for as long as the NativePSFSet is referenced. Immutable once built, so
any number of threads may evaluate with it.
"""
from __future__ import annotations

from typing import Any, Iterable

from .._native import ffi, lib
from ..errors import InvalidArgument
from .expr import Expression, Path
from .values import _json_text, canonical_scalar

__all__ = ["NativePSFSet"]


class _Node:
    __slots__ = ("keys", "indexes", "wants_slot", "id", "slot")

    def __init__(self) -> None:
        self.keys: dict[bytes, _Node] = {}
        self.indexes: dict[int, _Node] = {}
        self.wants_slot = False
        self.id = -1
        self.slot = -1


def _literal_entry(value: Any) -> tuple[int, bytes, float]:
    got = _json_text(value)
    canon = canonical_scalar(value)
    if got is None or canon is None:
        raise InvalidArgument(f"literal {value!r} cannot be compiled")
    _, type_ = got
    num = float(value) if type_ == lib.SHOAL_T_NUMBER else 0.0
    return type_, canon, num


class NativePSFSet:
    """A compiled `shoal_psfset`. Build with `build` or `build_single`."""

    def __init__(self) -> None:  # use build()
        self._keep: list[Any] = []
        self._prog_of: dict[int, int] = {}
        self.ptr: Any = ffi.NULL
        self.n_slots = 0
        self.slot_paths: tuple[Path, ...] = ()
        self.psf_ids: tuple[int, ...] = ()
        self._transforms: dict[int, tuple[int, float]] = {}

    # ---- construction -------------------------------------------------------

    @classmethod
    def build(cls, items: Iterable[tuple[int, Expression]], *,
              key: Expression | None = None,
              transforms: dict[int, tuple[int, float]] | None = None) -> "NativePSFSet":
        """Compile (psf_id, native expression) pairs; program i is items[i].
        With `key` (a keyed store's key expression), program 0 computes the
        key (psf id SHOAL_KEY_PSF_ID) and records without one are rejected.
        `transforms`: psf_id -> (SHOAL_XF_*, bucket width) of bucketed PSFs."""
        items = list(items)
        seen: set[int] = set()
        for psf_id, expr in items:
            if not isinstance(expr, Expression) or not expr.native:
                raise InvalidArgument(f"PSF {psf_id}: expression is not native")
            if psf_id in seen:
                raise InvalidArgument(f"PSF {psf_id} appears twice")
            if not 0 <= psf_id < lib.SHOAL_MAX_KPS:
                raise InvalidArgument(f"psf_id {psf_id} out of range")
            seen.add(psf_id)
        if key is not None:
            if not key.native:
                raise InvalidArgument("the key expression is not native")
            items.insert(0, (lib.SHOAL_KEY_PSF_ID, key))
        self = cls()
        self._transforms = transforms or {}
        self._build_trie(items)
        self._build_programs(items)
        self.ptr.key_required = 1 if key is not None else 0
        return self

    @classmethod
    def build_single(cls, expr: Expression, transform: tuple[int, float] | None = None) -> "NativePSFSet":
        """A set holding only `expr` as program 0 (psf_id 0), for scans;
        with `transform`, its values bucketed as a bucketed PSF's are."""
        return cls.build([(0, expr)], transforms={0: transform} if transform else None)

    def _build_trie(self, items: list[tuple[int, Expression]]) -> None:
        root = _Node()
        for _, expr in items:
            for op, arg in expr.program:
                if op != "SLOT":
                    continue
                node = root
                for step in arg:
                    if isinstance(step, str):
                        node = node.keys.setdefault(step.encode("utf-8"), _Node())
                    else:
                        node = node.indexes.setdefault(step, _Node())
                node.wants_slot = True

        order: list[_Node] = []          # DFS pre-order
        ranges: dict[int, tuple[int, int]] = {}
        slot_paths: list[Path] = []
        n_slots = 0

        def children(node: _Node) -> list[tuple[Any, _Node]]:
            return sorted(node.keys.items()) + sorted(node.indexes.items())

        # Iterative DFS: paths may be deep enough to trouble Python's recursion.
        # `path` is the current node's path, pushed and popped in place (a
        # tuple per node would make a long path quadratic).
        path: list[Any] = []
        stack: list[tuple[_Node, Any, bool]] = [(root, None, False)]
        while stack:
            node, step, done = stack.pop()
            if done:
                ranges[node.id] = (ranges[node.id][0], n_slots)
                if step is not None:
                    path.pop()
                continue
            if step is not None:
                path.append(step)
            node.id = len(order)
            order.append(node)
            lo = n_slots
            if node.wants_slot:
                node.slot = n_slots
                slot_paths.append(tuple(path))
                n_slots += 1
            ranges[node.id] = (lo, -1)
            stack.append((node, step, True))
            for edge, child in reversed(children(node)):
                stack.append((child, edge.decode("utf-8") if isinstance(edge, bytes) else edge, False))

        key_pool = bytearray()
        edge_rows: list[tuple[int, int, int]] = []
        first_edge: list[int] = []
        for node in order:
            first_edge.append(len(edge_rows))
            for edge, child in children(node):
                if isinstance(edge, bytes):
                    edge_rows.append((len(key_pool), len(edge), child.id))
                    key_pool += edge
                else:
                    edge_rows.append((edge, lib.SHOAL_EDGE_INDEX, child.id))

        nodes = ffi.new("shoal_trie_node[]", len(order))
        for i, node in enumerate(order):
            lo, hi = ranges[i]
            n = nodes[i]
            n.slot = node.slot
            n.slot_lo = lo
            n.slot_hi = hi
            n.first_edge = first_edge[i]
            n.n_edges = len(node.keys) + len(node.indexes)
        edges = ffi.new("shoal_trie_edge[]", max(len(edge_rows), 1))
        for i, (off, length, child) in enumerate(edge_rows):
            edges[i].key_off = off
            edges[i].key_len = length
            edges[i].child = child
        keys = ffi.new("char[]", bytes(key_pool) or b"\0")

        self._keep += [nodes, edges, keys]
        self._nodes, self._edges, self._keys = nodes, edges, keys
        self._n_nodes, self._n_edges = len(order), len(edge_rows)
        self.n_slots = n_slots
        self.slot_paths = tuple(slot_paths)
        self._slot_of = {p: i for i, p in enumerate(slot_paths)}

    def _build_programs(self, items: list[tuple[int, Expression]]) -> None:
        insn_rows: list[tuple[int, int]] = []
        lit_index: dict[tuple[int, bytes], int] = {}
        lit_rows: list[tuple[int, int, int, float]] = []
        pool = bytearray()
        prog_rows: list[tuple[int, int, int]] = []
        for psf_id, expr in items:
            first = len(insn_rows)
            for op, arg in expr.program:
                if op == "SLOT":
                    insn_rows.append((lib.SHOAL_OP_SLOT, self._slot_of[arg]))
                elif op == "LIT":
                    type_, canon, num = _literal_entry(arg)
                    key = (type_, canon)
                    if key not in lit_index:
                        lit_index[key] = len(lit_rows)
                        lit_rows.append((type_, len(pool), len(canon), num))
                        pool += canon
                    insn_rows.append((lib.SHOAL_OP_LIT, lit_index[key]))
                else:
                    insn_rows.append((getattr(lib, "SHOAL_OP_" + op), 0))
            prog_rows.append((psf_id, first, len(insn_rows) - first))
            self._prog_of[psf_id] = len(prog_rows) - 1

        progs = ffi.new("shoal_prog[]", max(len(prog_rows), 1))
        for i, (psf_id, first, n) in enumerate(prog_rows):
            progs[i].psf_id = psf_id
            progs[i].first_insn = first
            progs[i].n_insns = n
            xf, width = self._transforms.get(psf_id, (lib.SHOAL_XF_NONE, 0.0))
            progs[i].transform = xf
            progs[i].bucket = width
        insns = ffi.new("shoal_insn[]", max(len(insn_rows), 1))
        for i, (op, arg) in enumerate(insn_rows):
            insns[i].op = op
            insns[i].arg = arg
        lits = ffi.new("shoal_lit[]", max(len(lit_rows), 1))
        for i, (type_, off, length, num) in enumerate(lit_rows):
            lits[i].type = type_
            lits[i].canon_off = off
            lits[i].canon_len = length
            lits[i].num = num
        lit_pool = ffi.new("char[]", bytes(pool) or b"\0")

        s = ffi.new("shoal_psfset *")
        s.trie.nodes = self._nodes
        s.trie.n_nodes = self._n_nodes
        s.trie.edges = self._edges
        s.trie.n_edges = self._n_edges
        s.trie.keys = self._keys
        s.trie.n_slots = self.n_slots
        s.progs = progs
        s.n_progs = len(prog_rows)
        s.insns = insns
        s.lits = lits
        s.lit_pool = lit_pool
        self._keep += [progs, insns, lits, lit_pool, s]
        self.ptr = s
        self.psf_ids = tuple(p for p, _, _ in prog_rows)

    # ---- use ----------------------------------------------------------------

    @property
    def trie(self) -> Any:
        """`shoal_trie *` for shoal_parse (lives as long as this set)."""
        return ffi.addressof(self.ptr, "trie")

    @property
    def n_progs(self) -> int:
        return len(self.psf_ids)

    @property
    def empty(self) -> bool:
        """True when the set holds no programs (and the trie no slots)."""
        return not self.psf_ids

    def prog_index(self, psf_id: int) -> int:
        """Program number of `psf_id`; InvalidArgument if it is not in the set."""
        try:
            return self._prog_of[psf_id]
        except KeyError:
            raise InvalidArgument(f"PSF {psf_id} is not in this native set") from None

    def __contains__(self, psf_id: int) -> bool:
        return psf_id in self._prog_of

    def __repr__(self) -> str:
        return f"NativePSFSet(progs={self.n_progs}, slots={self.n_slots})"
