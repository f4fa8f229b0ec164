"""Independent oracles for the PSF tests, written from the specs rather than
from shoal's code: canonical bytes via `decimal`, and a small JSON span finder
standing in for shoal_parse's trie extraction."""
from __future__ import annotations

import decimal
import json
import re
from typing import Any

SHOAL_T_MISSING, SHOAL_T_NULL, SHOAL_T_FALSE, SHOAL_T_TRUE = 0, 1, 2, 3
SHOAL_T_NUMBER, SHOAL_T_STRING, SHOAL_T_ARRAY, SHOAL_T_OBJECT = 4, 5, 6, 7
VF_ESCAPED, VF_EMPTY = 1, 2

_CTX = decimal.Context(prec=100000)


def canon_decimal(text: str) -> bytes:
    """Canonical number bytes from a decimal text: b"n0", or n[-]digits e exp."""
    d = _CTX.create_decimal(text)
    if d.is_zero():
        return b"n0"
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).lstrip("0")
    stripped = ds.rstrip("0")
    exp += len(ds) - len(stripped)
    return f"n{'-' if sign else ''}{stripped}e{exp}".encode()


def canon_ref(value: Any) -> bytes | None:
    """Canonical bytes of an indexable Python value, or None."""
    if value is True:
        return b"t"
    if value is None or value is False or isinstance(value, (list, dict)):
        return None
    if isinstance(value, str):
        return b"s" + value.encode("utf-8")
    if isinstance(value, int):
        return canon_decimal(str(value))
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return canon_decimal(repr(value))
    raise TypeError(type(value))


# ---- span finder -------------------------------------------------------------

_WS = re.compile(rb"[ \t\r\n]*")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


class Node:
    __slots__ = ("start", "end", "type", "flags", "children")

    def __init__(self, start, end, type_, flags, children=None):
        self.start, self.end, self.type, self.flags, self.children = start, end, type_, flags, children


def _value(buf: bytes, i: int) -> tuple[Node, int]:
    i = _WS.match(buf, i).end()
    c = buf[i:i + 1]
    if c == b'"':
        m = _STRING.match(buf, i)
        flags = (VF_ESCAPED if b"\\" in m.group() else 0) | (VF_EMPTY if m.end() - i == 2 else 0)
        return Node(i, m.end(), SHOAL_T_STRING, flags), m.end()
    if c == b"{":
        kids: dict[str, Node] = {}
        j = _WS.match(buf, i + 1).end()
        if buf[j:j + 1] == b"}":
            return Node(i, j + 1, SHOAL_T_OBJECT, VF_EMPTY, kids), j + 1
        while True:
            j = _WS.match(buf, j).end()
            m = _STRING.match(buf, j)
            key = json.loads(m.group())
            j = _WS.match(buf, m.end()).end()
            assert buf[j:j + 1] == b":"
            node, j = _value(buf, j + 1)
            kids.pop(key, None)  # duplicate keys: the last wins
            kids[key] = node
            j = _WS.match(buf, j).end()
            if buf[j:j + 1] == b"}":
                return Node(i, j + 1, SHOAL_T_OBJECT, 0, kids), j + 1
            assert buf[j:j + 1] == b","
            j += 1
    if c == b"[":
        items: list[Node] = []
        j = _WS.match(buf, i + 1).end()
        if buf[j:j + 1] == b"]":
            return Node(i, j + 1, SHOAL_T_ARRAY, VF_EMPTY, items), j + 1
        while True:
            node, j = _value(buf, j)
            items.append(node)
            j = _WS.match(buf, j).end()
            if buf[j:j + 1] == b"]":
                return Node(i, j + 1, SHOAL_T_ARRAY, 0, items), j + 1
            assert buf[j:j + 1] == b","
            j += 1
    for word, t in ((b"true", SHOAL_T_TRUE), (b"false", SHOAL_T_FALSE), (b"null", SHOAL_T_NULL)):
        if buf.startswith(word, i):
            return Node(i, i + len(word), t, 0), i + len(word)
    m = _NUMBER.match(buf, i)
    assert m and m.end() > i, (buf[i:i + 20], i)
    return Node(i, m.end(), SHOAL_T_NUMBER, 0), m.end()


def parse_tree(buf: bytes) -> Node:
    node, _ = _value(buf, 0)
    return node


def locate(tree: Node, path: tuple) -> tuple[int, int, int, int]:
    """(start, len, type, flags) of the value at `path`, MISSING if absent."""
    node = tree
    for step in path:
        if isinstance(step, str):
            if node.type != SHOAL_T_OBJECT or step not in node.children:
                return (0, 0, SHOAL_T_MISSING, 0)
            node = node.children[step]
        else:
            if node.type != SHOAL_T_ARRAY or step >= len(node.children):
                return (0, 0, SHOAL_T_MISSING, 0)
            node = node.children[step]
    return (node.start, node.end - node.start, node.type, node.flags)
