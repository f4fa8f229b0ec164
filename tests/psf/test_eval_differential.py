"""C evaluation (shoal_eval + shoal_val_canon over trie slots) against jmespath
1.1.0 on parsed records, with canonical bytes from an independent oracle."""
from __future__ import annotations

import json
import random

import jmespath
import jmespath.exceptions
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from .psf_harness import Runner, native_parse_available
from .psf_oracles import canon_decimal, canon_ref, locate, parse_tree

from shoal.psf import NativePSFSet, parse_definition



def oracle(text: str, obj) -> bytes | None:
    """jmespath's answer as canonical bytes. Where jmespath raises TypeError
    (ordering a number against a string) shoal's dialect, which says null
    there, is the reference; everywhere else the dialect must agree."""
    mine = canon_ref(parse_definition(text).search(obj))
    try:
        want = jmespath.search(text, obj)
    except TypeError:
        return mine
    assert mine == canon_ref(want), text
    return canon_ref(want)


def check_records(texts: list[str], records: list[bytes], *, use_parse: bool | None = None) -> int:
    exprs = [parse_definition(t) for t in texts]
    for e in exprs:
        assert e.native, (e.text, e.why_not_native)
    runner = Runner(NativePSFSet.build(list(enumerate(exprs))), use_parse=use_parse)
    checked = 0
    for rec in records:
        obj = json.loads(rec)  # exact ints beyond 64 bits, unlike orjson
        got = runner.values(rec)
        for text, value in zip(texts, got):
            want = oracle(text, obj)
            assert value == want, (text, rec[:300], value, want)
            checked += 1
    return checked


# ---- generated records and expressions -------------------------------------

KEYS = ["a", "b", "id.resp_p", "é", "", "k\"q", "x\\y", "type"]
WORDS = ["", "Push", "PushEvent", "x", "é", "héllo wörld", "🐟", "a\"b", "back\\slash", "tab\t", "zz" * 150]

json_strings = st.one_of(st.sampled_from(WORDS), st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
json_ints = st.one_of(st.integers(-3, 3), st.sampled_from([7, 10, 1000, 2**53, 2**53 + 1, -(2**63), 2**64 - 1]),
                      st.integers(-(2**63), 2**63 - 1))
json_floats = st.one_of(st.sampled_from([0.0, -0.0, 1.0, 1.5, 0.1, 1e-7, 7.5, -2.25, 1e16, 2.5e20, 1e300]),
                        st.floats(-(2.0**53), 2.0**53, allow_nan=False, allow_infinity=False))
json_scalars = st.one_of(st.none(), st.booleans(), json_ints, json_floats, json_strings)
class Obj:
    """A generated JSON object: (key, value) pairs, so keys may repeat."""

    def __init__(self, pairs):
        self.pairs = pairs


json_values = st.recursive(
    json_scalars,
    lambda kids: st.one_of(
        st.lists(kids, max_size=4),
        st.builds(Obj, st.lists(st.tuples(st.sampled_from(KEYS), kids), max_size=5)),
    ),
    max_leaves=20,
)
json_records = st.one_of(
    st.builds(Obj, st.lists(st.tuples(st.sampled_from(KEYS), json_values), max_size=8)),
    json_values,
)


def _ws(rng: random.Random) -> str:
    return rng.choice(["", "", "", " ", "\n", " \t\r\n "])


def _dump_string(s: str, rng: random.Random) -> str:
    out = ['"']
    for ch in s:
        cp = ord(ch)
        r = rng.random()
        if ch in '"\\' or cp < 0x20:
            short = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\b": "\\b", "\f": "\\f"}
            out.append(short[ch] if ch in short and r < 0.5 else f"\\u{cp:04x}")
        elif r < 0.15:
            if cp > 0xFFFF:
                v = cp - 0x10000
                out.append(f"\\u{0xD800 + (v >> 10):04X}\\u{0xDC00 + (v & 0x3FF):04x}")
            else:
                out.append(f"\\u{cp:04x}")
        elif ch == "/" and r < 0.5:
            out.append("\\/")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _dump_number(n, rng: random.Random) -> str:
    if isinstance(n, float):
        return orjson.dumps(n).decode()
    if abs(n) < 2**53 and rng.random() < 0.3:  # the same value, spelled otherwise
        spellings = [f"{n}.0", f"{n}e0", f"{n}.000E+0"] + ([f"{n}0e-1"] if n else [])
        return rng.choice(spellings)
    return str(n)


def dump(v, rng: random.Random) -> str:
    """JSON text of a generated value, with varied escapes and whitespace."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return _dump_number(v, rng)
    if isinstance(v, str):
        return _dump_string(v, rng)
    if isinstance(v, Obj):
        body = ",".join(f"{_ws(rng)}{_dump_string(k, rng)}{_ws(rng)}:{_ws(rng)}{dump(x, rng)}{_ws(rng)}"
                        for k, x in v.pairs)
        return "{" + body + _ws(rng) + "}"
    return "[" + ",".join(f"{_ws(rng)}{dump(x, rng)}{_ws(rng)}" for x in v) + _ws(rng) + "]"


def _quote_key(k: str) -> str:
    return json.dumps(k, ensure_ascii=False)


def _literal_text(value, rng: random.Random) -> str:
    if isinstance(value, str) and rng.random() < 0.5:
        raw = "'" + value.replace("'", "\\'") + "'"
        try:
            if jmespath.compile(raw).parsed == {"type": "literal", "value": value, "children": []}:
                return raw
        except jmespath.exceptions.JMESPathError:
            pass
    return "`" + json.dumps(value, ensure_ascii=False).replace("`", "\\`") + "`"


LITERALS = WORDS[:9] + [0, 1, -1, 7, 7.5, 1.0, 0.1, 1000, 2**53, 2**53 + 1, 2**64 - 1, -(2**63), True, False, None]


@st.composite
def paths(draw):
    steps = draw(st.lists(st.one_of(st.sampled_from(KEYS), st.integers(0, 2)), min_size=0, max_size=3))
    if not steps:
        return "@"
    text = ""
    for i, s in enumerate(steps):
        if isinstance(s, int):
            text += f"[{s}]"
        else:
            text += ("." if i else "") + _quote_key(s)
    return text


@st.composite
def expressions(draw, depth=0):
    rng = random.Random(draw(st.integers(0, 2**32)))
    choice = draw(st.integers(0, 9 if depth < 3 else 2))
    if choice <= 1:
        return draw(paths())
    if choice == 2:
        return _literal_text(draw(st.sampled_from(LITERALS)), rng)
    if choice <= 5:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        lit = _literal_text(draw(st.sampled_from(LITERALS)), rng)
        other = draw(expressions(depth + 1))
        return f"({other}) {op} {lit}" if draw(st.booleans()) else f"{lit} {op} ({other})"
    if choice == 6:
        return f"!({draw(expressions(depth + 1))})"
    op = draw(st.sampled_from(["&&", "||"]))
    return f"({draw(expressions(depth + 1))}) {op} ({draw(expressions(depth + 1))})"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=json_records, texts=st.lists(expressions(), min_size=1, max_size=6), seed=st.integers(0, 2**32))
def test_generated(rec, texts, seed):
    text = dump(rec, random.Random(seed)).encode()
    check_records(texts, [text], use_parse=False)
    if native_parse_available():
        check_records(texts, [text], use_parse=True)


@pytest.mark.parametrize("text,rec,want", [
    ("a == 'Push'", rb'{"a":"\u0050ush"}', b"t"),
    ("a == `1`", b'{"a":1.0}', b"t"),
    ("a == `1`", b'{"a":10e-1}', b"t"),
    ("a == `true`", b'{"a":1}', None),
    ("a == `1`", b'{"a":true}', None),
    ("a == `null`", b"{}", b"t"),
    ("a != `null`", b'{"a":null}', None),
    ("a == ''", b'{"a":""}', b"t"),
    ("a", rb'{"a":"\ud83d\udc1f"}', "s🐟".encode()),
    ("a > `9007199254740992`", b'{"a":9007199254740993}', b"t"),
    ("a > `9007199254740992.0`", b'{"a":9007199254740993}', b"t"),
    ("a < `-1`", b'{"a":-1.5}', b"t"),
    ("a < `0`", b'{"a":-0}', None),
    ("a >= `0`", b'{"a":-0.0}', b"t"),
    ("a < 'b'", b'{"a":1}', None),
    ("(a < 'b') || 'fallback'", b'{"a":1}', b"sfallback"),
    ("a < 'é'", b'{"a":"z"}', b"t"),
    ("a < 'b'", rb'{"a":"\u0061"}', b"t"),
    ("!a", b'{"a":0}', None),
    ("!a", b'{"a":""}', b"t"),
    ("!a", b'{"a":[ ]}', b"t"),
    ("!a", b'{"a":{}}', b"t"),
    ("!a", b'{"a":[0]}', None),
    ("a && b", b'{"a":[1],"b":"x"}', b"sx"),
    ("a || b", b'{"a":{},"b":3}', b"n3e0"),
    ("a", b'{"a":[1]}', None),
    ("a", b'{"a":false}', None),
    ("`3`", b"{}", b"n3e0"),
    ("@", b'"just a string"', b"sjust a string"),
    ("[1]", b'["x", "y"]', b"sy"),
    ("a[0].b", b'{"a":[{"b":2}]}', b"n2e0"),
    ("a.b", b'{"a":[{"b":2}]}', None),
    ("\"id.resp_p\"", b'{"id.resp_p":443,"id":{"resp_p":1}}', b"n443e0"),
    ("id.resp_p", b'{"id.resp_p":443,"id":{"resp_p":1}}', b"n1e0"),
    ("a", b'{"a":1,"a":2}', b"n2e0"),
    ("a.b", b'{"a":{"b":1},"a":{"c":2}}', None),
])
def test_cases(text, rec, want):
    assert oracle(text, orjson.loads(rec)) == want
    assert check_records([text], [rec], use_parse=False) == 1
    if native_parse_available():
        check_records([text], [rec], use_parse=True)


def test_long_strings_and_numbers_take_the_heap_path():
    long_word = "é" * 400 + "x"
    esc = "".join(f"\\u{ord(c):04x}" for c in long_word)
    digits = "1" * 300
    recs = [
        ('{"a":"%s"}' % esc).encode(),
        ('{"a":"%s"}' % long_word).encode(),
        ('{"a":%s}' % digits).encode(),
        ('{"a":-%s}' % digits).encode(),
    ]
    texts = [f"a == '{long_word}'", f"a == '{long_word[:-1]}'", f"a < '{long_word}y'",
             f"a > '{long_word[:-1]}'", f"a == `{digits}`", f"a > `{digits}`", "a >= `1e299`",
             "a < `1e300`", f"a > `-{digits}`", "a"]
    check_records(texts, recs, use_parse=False)
    if native_parse_available():
        check_records(texts, recs, use_parse=True)


def test_numbers_are_exact_decimals():
    """Record numbers keep their exact decimal value, even beyond a double's
    precision (where Python, parsing to float, would round)."""
    text = "1" * 300 + ".5"
    rec = ('{"a":%s}' % text).encode()
    exprs = [parse_definition(t) for t in
             ["a", f"a > `{'1' * 300}`", f"a < `{'1' * 299}2`", f"a == `{float(text)!r}`"]]
    runner = Runner(NativePSFSet.build(list(enumerate(exprs))), use_parse=False)
    assert runner.values(rec) == [canon_decimal(text), b"t", b"t", None]


# ---- generated and real records ----------------------------------------------------

GITHUB = ["type", "type == 'PushEvent'", "repo.name", "actor.login",
          "payload.size > `3`", "payload.commits[0].author.name",
          "public && type", "!(type == 'PushEvent')", "`\"PushEvent\"` == type",
          "payload.size", "created_at < '2013-04-01T'", "created_at < '2015-01-02T'", "@", "id",
          "org.login || `\"no org\"`"]
STATUSES = ["lang", "user.screen_name", "user.lang || lang", "metadata.result_type",
            "user.lang == 'ja'", "id", "id > `505874924095815681`", "id_str",
            "retweeted_status.user.screen_name", "entities.hashtags[0].text",
            "user.followers_count >= `1000`", "place", "text", "favorited || `\"none\"`",
            "retweet_count == `0`"]
ZEEK = ["_path", "query", "\"id.resp_p\"", "\"id.resp_p\" > `1000`",
        "_path == 'dns' && query", "!(proto == 'udp')", "\"id.orig_h\"",
        "proto", "ts", "rtt < `0.01`", "answers[0]", "TTLs[0] > `100`",
        "qtype_name == 'A' || qtype_name == 'AAAA'", "\"id.resp_h\" == '10.47.1.10'",
        "established", "_write_ts > '2018-03-24T17:30'", "_write_ts > '2018-03-24T17:16'", "uid"]
# name: (source, data set, records, expressions). The real data sets are the
# real-data tier (skipped when absent).
DATASETS = {
    "github": ("generated", "github_events", 300, GITHUB),
    "statuses": ("generated", "statuses", 100, STATUSES),
    "zeek": ("generated", "zeek_logs", 3000, ZEEK),
    "github-real": ("real", "github_events", None, GITHUB),
    "twitter-real": ("real", "twitter_statuses", None, STATUSES),
    "zeek-real": ("real", "zeek_wrccdc2018", 20000, ZEEK),
    "amazon-real": ("real", "amazon_cellphones", None, ["[1]", "[7]", "[7] > `100`", "[1] == 'Samsung'",
                                                        "[8][0].price", "[0]", "[5] >= `4`"]),
}


@pytest.fixture(params=sorted(DATASETS))
def dataset(request, generated, real_data) -> tuple[list[bytes], list[str]]:
    """(records, expressions) of one data set."""
    source, name, limit, texts = DATASETS[request.param]
    return list((generated if source == "generated" else real_data)(name, limit)), texts


@pytest.mark.slow
def test_records(dataset):
    records, texts = dataset
    n = check_records(texts, records)  # shoal_parse if available
    assert n == len(texts) * len(records)
    if native_parse_available():
        # The span finder on a sample, to cross-check shoal_parse's slots too.
        check_records(texts, records[:: max(1, len(records) // 500)], use_parse=False)


@pytest.mark.skipif(not native_parse_available(), reason="shoal_parse not built yet")
def test_shoal_parse_fills_slots_like_the_span_finder(dataset):
    records, texts = dataset
    psfset = NativePSFSet.build(list(enumerate(parse_definition(t) for t in texts)))
    runner = Runner(psfset, use_parse=True)
    for rec in records[:: 7]:
        runner.fill(rec)
        tree = parse_tree(rec)
        for i, p in enumerate(psfset.slot_paths):
            s = runner.slots[i]
            want = locate(tree, p)
            got = (s.start, s.len, s.type, s.flags) if s.type else (0, 0, 0, 0)
            if want[2] == 0:
                assert s.type == 0, (p, rec[:200])
            else:
                assert got == want, (p, got, want, rec[:200])
