"""NativePSFSet layout, and shoal_eval / shoal_val_canon edge cases."""
from __future__ import annotations

import pytest
from .psf_harness import Runner

from shoal._native import ffi, lib
from shoal.config import ExpressionLimits
from shoal.errors import InvalidArgument
from shoal.psf import NativePSFSet, parse_definition
from shoal.psf import expr as expr_mod


def build(*texts):
    return NativePSFSet.build([(10 + i, parse_definition(t)) for i, t in enumerate(texts)])


def _subtree(trie, node):
    """Nodes of the subtree rooted at `node`."""
    out = [node]
    n = trie.nodes[node]
    for e in range(n.first_edge, n.first_edge + n.n_edges):
        out += _subtree(trie, trie.edges[e].child)
    return out


def test_trie_layout_invariants():
    s = build("a.b", "a.c == 'x'", "a", "@", "a[2].b", "z", "a[0]", "\"id.resp_p\"", "a[10].\"\"",
              "q.r.s.t", "a.b || a.c")
    trie = s.ptr.trie
    assert trie.n_slots == s.n_slots == len(s.slot_paths) == len(set(s.slot_paths))
    # every path reached by walking the trie is exactly one slot
    found = {}

    def walk(node, path):
        n = trie.nodes[node]
        if n.slot >= 0:
            found[path] = n.slot
        keys = []
        for e in range(n.first_edge, n.first_edge + n.n_edges):
            edge = trie.edges[e]
            if edge.key_len == lib.SHOAL_EDGE_INDEX:
                step = edge.key_off
            else:
                step = ffi.unpack(trie.keys + edge.key_off, edge.key_len).decode()
            keys.append(step)
            walk(edge.child, path + (step,))
        # keys first (sorted by bytes), then indexes ascending
        strs = [k for k in keys if isinstance(k, str)]
        ints = [k for k in keys if isinstance(k, int)]
        assert keys == strs + ints
        assert strs == sorted(strs, key=lambda k: k.encode()) and ints == sorted(ints)
        assert len(set(keys)) == len(keys)

    walk(0, ())
    assert found == {p: i for i, p in enumerate(s.slot_paths)}
    # slot ranges are exactly the subtree's slots, and contiguous
    for node in range(trie.n_nodes):
        n = trie.nodes[node]
        slots = sorted(trie.nodes[x].slot for x in _subtree(trie, node) if trie.nodes[x].slot >= 0)
        assert slots == list(range(n.slot_lo, n.slot_hi))
    assert trie.nodes[0].slot == s.slot_paths.index(())


def test_empty_set():
    s = NativePSFSet.build([])
    assert s.empty and s.n_slots == 0 and s.n_progs == 0
    trie = s.ptr.trie
    assert trie.n_nodes == 1 and trie.n_edges == 0 and trie.nodes[0].slot == -1
    assert (trie.nodes[0].slot_lo, trie.nodes[0].slot_hi) == (0, 0)
    val = ffi.new("shoal_val *")
    assert lib.shoal_eval(s.ptr, 0, b"{}", ffi.NULL, val) == lib.SHOAL_E_ARG


def test_prog_index_and_build_single():
    s = build("a", "b == `1`")
    assert s.prog_index(10) == 0 and s.prog_index(11) == 1 and 11 in s and 12 not in s
    assert s.ptr.progs[1].psf_id == 11
    with pytest.raises(InvalidArgument):
        s.prog_index(12)
    one = NativePSFSet.build_single(parse_definition("type == 'PushEvent'"))
    assert one.n_progs == 1 and one.prog_index(0) == 0
    assert Runner(one, use_parse=False).values(b'{"type":"PushEvent"}') == [b"t"]


def test_literals_are_deduplicated():
    s = build("a == 'x'", "b == 'x' || c == `1`", "`1.0` == d")
    assert [s.ptr.lits[i].type for i in range(2)] == [lib.SHOAL_T_STRING, lib.SHOAL_T_NUMBER]
    lit = s.ptr.lits[1]
    assert ffi.unpack(s.ptr.lit_pool + lit.canon_off, lit.canon_len) == b"n1e0" and lit.num == 1.0


def test_rejects_non_native_and_bad_ids():
    with pytest.raises(InvalidArgument):
        NativePSFSet.build([(0, parse_definition("a[*].b"))])
    with pytest.raises(InvalidArgument):
        NativePSFSet.build([(0, parse_definition("a")), (0, parse_definition("b"))])
    with pytest.raises(InvalidArgument):
        NativePSFSet.build([(lib.SHOAL_MAX_KPS, parse_definition("a"))])


def test_stack_depth_limit_matches_header():
    assert expr_mod.MAX_STACK == lib.SHOAL_MAX_STACK
    # right-nested && needs one stack entry per level
    deep = "a"
    for _ in range(lib.SHOAL_MAX_STACK - 1):
        deep = f"a && ({deep})"
    roomy = ExpressionLimits(max_expression_depth=1000)  # deeper than the default nesting limit
    e = parse_definition(deep, roomy)
    assert e.native
    s = NativePSFSet.build_single(e)
    assert Runner(s, use_parse=False).values(b'{"a":"v"}') == [b"sv"]
    assert not parse_definition(f"a && ({deep})", roomy).native
    left = "a"
    for _ in range(200):
        left = f"({left}) || a"
    assert parse_definition(left, roomy).native


def _raw_set(insns, n_slots=1, lits=()):
    """A hand-made psfset with one program, to feed shoal_eval bad programs."""
    keep = []
    s = ffi.new("shoal_psfset *")
    nodes = ffi.new("shoal_trie_node[]", 1)
    nodes[0].slot = 0 if n_slots else -1
    nodes[0].slot_hi = n_slots
    prog = ffi.new("shoal_prog[]", 1)
    prog[0].n_insns = len(insns)
    ins = ffi.new("shoal_insn[]", max(1, len(insns)))
    for i, (op, arg) in enumerate(insns):
        ins[i].op, ins[i].arg = op, arg
    pool = ffi.new("char[]", b"sx")
    lit = ffi.new("shoal_lit[]", 1)
    lit[0].type, lit[0].canon_off, lit[0].canon_len = lib.SHOAL_T_STRING, 0, 2
    s.trie.nodes, s.trie.n_nodes, s.trie.n_slots = nodes, 1, n_slots
    s.progs, s.n_progs, s.insns, s.lits, s.lit_pool = prog, 1, ins, lit, pool
    keep += [nodes, prog, ins, pool, lit]
    return s, keep


@pytest.mark.parametrize("insns", [
    [],
    [(lib.SHOAL_OP_EQ, 0)],
    [(lib.SHOAL_OP_SLOT, 0), (lib.SHOAL_OP_NOT, 0), (lib.SHOAL_OP_AND, 0)],
    [(lib.SHOAL_OP_NOT, 0)],
    [(lib.SHOAL_OP_SLOT, 0), (lib.SHOAL_OP_SLOT, 0)],
    [(lib.SHOAL_OP_SLOT, 1)],
    [(99, 0)],
    [(lib.SHOAL_OP_LIT, 0)] * (lib.SHOAL_MAX_STACK + 1),
    [(lib.SHOAL_OP_SLOT, 0)] * 2 + [(lib.SHOAL_OP_EQ, 0)],  # object vs object
])
def test_malformed_programs_are_rejected(insns):
    s, keep = _raw_set(insns)
    slots = ffi.new("shoal_slot[]", 1)
    rec = b'{"k":1}'
    slots[0].start, slots[0].len, slots[0].type = 0, len(rec), lib.SHOAL_T_OBJECT
    val = ffi.new("shoal_val *")
    assert lib.shoal_eval(s, 0, rec, slots, val) == lib.SHOAL_E_ARG
    assert lib.shoal_eval(s, 1, rec, slots, val) == lib.SHOAL_E_ARG
    assert lib.shoal_eval(ffi.NULL, 0, rec, slots, val) == lib.SHOAL_E_ARG


def test_max_stack_is_allowed():
    insns = [(lib.SHOAL_OP_LIT, 0)] * lib.SHOAL_MAX_STACK + [(lib.SHOAL_OP_AND, 0)] * (lib.SHOAL_MAX_STACK - 1)
    s, keep = _raw_set(insns)
    val = ffi.new("shoal_val *")
    assert lib.shoal_eval(s, 0, b"{}", ffi.new("shoal_slot[]", 1), val) == lib.SHOAL_OK
    assert val.origin == lib.SHOAL_ORIGIN_LIT and val.type == lib.SHOAL_T_STRING


@pytest.mark.parametrize("text,rec,want", [
    ("a", b'{"a":"xyz"}', b"sxyz"),
    ("a", rb'{"a":"x\u0079z"}', b"sxyz"),
    ("a", b'{"a":12.50}', b"n125e-1"),
    ("'lit'", b"{}", b"slit"),
    ("a == `1`", b'{"a":1}', b"t"),
])
def test_val_canon_space(text, rec, want):
    s = NativePSFSet.build_single(parse_definition(text))
    r = Runner(s, use_parse=False)
    r.fill(rec)
    val = ffi.new("shoal_val *")
    assert lib.shoal_eval(s.ptr, 0, rec, r.slots, val) == lib.SHOAL_OK
    dst = ffi.new("char[]", 64)
    assert lib.shoal_val_canon(s.ptr, rec, val, dst, len(want) - 1) == lib.SHOAL_E_SPACE
    assert lib.shoal_val_canon(s.ptr, rec, val, dst, len(want)) == len(want)
    assert ffi.unpack(dst, len(want)) == want


@pytest.mark.parametrize("t", ["MISSING", "NULL", "FALSE", "ARRAY", "OBJECT"])
def test_val_canon_not_indexable(t):
    val = ffi.new("shoal_val *")
    val.type = getattr(lib, "SHOAL_T_" + t)
    val.origin = lib.SHOAL_ORIGIN_RECORD
    assert lib.shoal_val_canon(ffi.NULL, b"[]", val, ffi.new("char[]", 8), 8) == 0
