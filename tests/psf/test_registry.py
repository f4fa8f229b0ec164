"""Registry: ids, ranges, names, persistence, atomic saves."""
from __future__ import annotations

import json
import os

import pytest

from shoal.errors import (
    CorruptionError,
    InvalidArgument,
    NativeIOError,
    PSFDefinitionError,
    PSFExists,
    PSFNotFound,
)
from shoal.psf import PSF, PSFKind, Registry, active_at, inactive_ranges
from shoal.psf import registry as registry_mod


@pytest.fixture
def reg_path(tmp_path):
    return tmp_path / "psfs.json"


def test_register_assigns_increasing_ids_and_open_range(reg_path):
    reg = Registry(reg_path)
    a = reg.register("type", "type", address=64)
    b = reg.register("push", "type == 'PushEvent'", address=100)
    assert (a.id, b.id) == (0, 1)
    assert a.ranges == [(64, None)] and a.active
    assert a.kind is PSFKind.PROJECTION and b.kind is PSFKind.PREDICATE
    assert a.native and b.native
    assert reg.get("push") is b and reg.by_id(1) is b
    assert [p.name for p in reg.active()] == ["type", "push"]


def test_active_name_conflicts(reg_path):
    reg = Registry(reg_path)
    reg.register("t", "type", address=64)
    with pytest.raises(PSFExists):
        reg.register("t", "type", address=70)
    with pytest.raises(PSFExists):
        reg.register("t", "other", address=70)


def test_exist_ok_accepts_the_same_definition_only(reg_path):
    reg = Registry(reg_path)
    t = reg.register("t", "type", address=64)
    saved = reg_path.read_bytes()
    assert reg.register("t", "type", address=90, exist_ok=True) is t
    assert t.ranges == [(64, None)] and reg_path.read_bytes() == saved  # no new range, nothing written
    with pytest.raises(PSFExists) as e:
        reg.register("t", "repo.name", address=90, exist_ok=True)
    assert (e.value.name, e.value.definition) == ("t", "type")
    assert "'type'" in str(e.value) and "deregister it first" in str(e.value)
    assert reg.get("t") is t and t.ranges == [(64, None)] and reg_path.read_bytes() == saved
    # a callable: the same function (fields and code) is the same definition
    f = reg.register("f", lambda v: v, fields=["a"], address=64)
    assert reg.register("f", lambda v: v, fields=["a"], address=90, exist_ok=True) is f
    with pytest.raises(PSFExists, match=r"defined as a Python callable of fields \['a'\]; to change it"):
        reg.register("f", lambda v: v, fields=["b"], address=90, exist_ok=True)
    with pytest.raises(PSFExists):
        reg.register("f", lambda v: not v, fields=["a"], address=90, exist_ok=True)
    assert f.ranges == [(64, None)]
    # a name not active: exist_ok registers as usual
    assert reg.register("n", "x", address=95, exist_ok=True).ranges == [(95, None)]


def test_replace_swaps_the_definition_at_one_address(reg_path):
    reg = Registry(reg_path)
    old = reg.register("t", "type", address=64)
    assert reg.register("t", "type", address=100, replace=True) is old and old.ranges == [(64, None)]
    new = reg.register("t", "repo.name", address=200, replace=True)
    assert new is not old and new.id != old.id and new.definition == "repo.name"
    assert new.ranges == [(200, None)] and old.ranges == [(64, 200)] and not old.active
    assert reg.get("t") is new and [p.id for p in reg.retired()] == [old.id]
    again = Registry(reg_path)  # saved as one change
    assert again.get("t").ranges == [(200, None)] and [p.ranges for p in again.retired()] == [[(64, 200)]]
    # replacing a PSF registered at this very address: the old one indexed nothing
    newer = reg.register("t", "actor", address=200, replace=True)
    assert newer.ranges == [(200, None)] and new.ranges == []
    # a name not active: replace registers as usual
    assert reg.register("u", "x", address=210, replace=True).ranges == [(210, None)]


def test_replace_at_the_active_bound_and_failed_saves_change_nothing(reg_path, monkeypatch):
    reg = Registry(reg_path, max_active=1)
    old = reg.register("t", "type", address=64)
    new = reg.register("t", "repo.name", address=100, replace=True)  # the old one's place frees the slot
    assert reg.active() == [new]
    saved = reg_path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)  # the one os module, as shoal.files uses it
    with pytest.raises(NativeIOError):
        reg.register("t", "actor", address=150, replace=True)
    monkeypatch.undo()
    assert reg.get("t") is new and new.ranges == [(100, None)] and old.ranges == [(64, 100)]
    assert [p.id for p in reg.retired()] == [old.id] and reg_path.read_bytes() == saved


def test_deregister_and_resume_same_definition(reg_path):
    reg = Registry(reg_path)
    p = reg.register("t", "type", address=64)
    reg.deregister("t", 200)
    assert not p.active and p.ranges == [(64, 200)]
    with pytest.raises(PSFNotFound):
        reg.deregister("t", 300)
    q = reg.register("t", "type", address=300)
    assert q is p and q.id == 0
    assert q.ranges == [(64, 200), (300, None)]
    reg.deregister("t", 400)
    assert q.ranges == [(64, 200), (300, 400)]
    # contiguous re-registration merges ranges
    reg.register("t", "type", address=400)
    assert q.ranges == [(64, 200), (300, None)]


def test_redefinition_retires_old_id(reg_path):
    reg = Registry(reg_path)
    old = reg.register("t", "type", address=64)
    reg.register("u", "actor.login", address=64)
    reg.deregister("t", 100)
    new = reg.register("t", "repo.name", address=150)
    assert new.id == 2 and new.ranges == [(150, None)]
    assert reg.get("t") is new
    assert reg.by_id(old.id) is old and old in reg.retired()
    assert old not in reg.all()
    # ids are never reused, even for a name that comes back to the old text
    reg.deregister("t", 160)
    again = reg.register("t", "type", address=170)
    assert again.id == 3


def test_empty_range_is_dropped(reg_path):
    reg = Registry(reg_path)
    p = reg.register("t", "type", address=64)
    reg.deregister("t", 64)
    assert p.ranges == [] and not p.active


def test_addresses_must_not_go_back(reg_path):
    reg = Registry(reg_path)
    reg.register("t", "type", address=100)
    with pytest.raises(InvalidArgument):
        reg.deregister("t", 50)
    reg.deregister("t", 200)
    with pytest.raises(InvalidArgument):
        reg.register("t", "type", address=150)
    with pytest.raises(InvalidArgument):
        reg.register("x", "type", address=-1)


def test_unknown_names(reg_path):
    reg = Registry(reg_path)
    with pytest.raises(PSFNotFound):
        reg.get("nope")
    with pytest.raises(PSFNotFound):
        reg.deregister("nope", 64)
    with pytest.raises(KeyError):  # PSFNotFound is also a KeyError
        reg.get("nope")
    assert reg.by_id(5) is None


@pytest.mark.parametrize("name", ["", "a" * 129, "tab\there", "nl\n", "del\x7f", "c1\x85", 5, None])
def test_bad_names(reg_path, name):
    reg = Registry(reg_path)
    with pytest.raises(InvalidArgument):
        reg.register(name, "type", address=64)
    assert len(reg) == 0 and not reg_path.exists()


def test_good_names(reg_path):
    reg = Registry(reg_path)
    for name in ["a" * 128, "with space", "ünïcødé", "emoji 🐟", "id.resp_p", "a/b"]:
        reg.register(name, "type", address=64)
    assert len(Registry(reg_path)) == 6


def test_bad_definitions(reg_path):
    reg = Registry(reg_path)
    with pytest.raises(PSFDefinitionError) as exc:
        reg.register("x", "type ==", address=64)
    assert exc.value.position == 7 and exc.value.expression == "type =="
    with pytest.raises(PSFDefinitionError):
        reg.register("x", "nosuch(a)", address=64)
    with pytest.raises(InvalidArgument):
        reg.register("x", 42, address=64)
    with pytest.raises(InvalidArgument):
        reg.register("x", "type", fields=["a"], address=64)
    with pytest.raises(PSFDefinitionError):
        reg.register("x", lambda a: a, fields=["a["], address=64)
    with pytest.raises(InvalidArgument):
        reg.register("x", lambda a: a, fields="a", address=64)
    # a failed registration consumes no id
    assert reg.register("x", "type", address=64).id == 0


def test_ids_are_reused_once_all_were_used(reg_path, monkeypatch):
    """Fresh ids first; once none is left, the lowest id no held PSF has
    (was: PSFError "all 65535 PSF ids have been used", for good)."""
    monkeypatch.setattr(registry_mod, "_ID_SPACE", 4)
    reg = Registry(reg_path, max_active=2, max_inactive=1)
    ids = []
    for i, name in enumerate("abcdefg"):
        ids.append(reg.register(name, "type", address=64 + 16 * i).id)
        reg.deregister(name, 72 + 16 * i)
    # a, b, c, d took the fresh ids; each later one the lowest id the registry
    # no longer holds (it keeps one inactive PSF: the one just deregistered)
    assert ids == [0, 1, 2, 3, 0, 1, 0]
    assert [p.name for p in reg.all()] == ["g"] and reg.by_id(3) is None
    # resuming a held id still works
    assert reg.register("g", "type", address=500).id == 0
    assert json.loads(reg_path.read_text())["next_id"] == 4
    assert Registry(reg_path).get("g").ranges == [(160, 168), (500, None)]


def test_persistence_round_trip(reg_path):
    reg = Registry(reg_path)
    reg.register("t", "type", address=64)
    reg.register("big", lambda size: size is not None and size > 3, fields=["payload.size"], address=64)
    reg.register("whole", lambda rec: rec.get("x"), address=70)
    reg.deregister("t", 100)
    reg.register("t", "repo.name", address=120)   # retires id 0
    reg.register("q", "\"id.resp_p\" > `1000`", address=130)
    reg.deregister("q", 140)

    again = Registry(reg_path)
    assert [(p.id, p.name, p.kind, p.definition, p.fields, p.ranges) for p in again.all()] == [
        (p.id, p.name, p.kind, p.definition, p.fields, p.ranges) for p in reg.all()
    ]
    assert [p.id for p in again.retired()] == [0]
    big = again.get("big")
    assert big.kind is PSFKind.CALLABLE and big.func is None and big.needs_callable
    assert big.fields == ("payload.size",) and big.field_expressions[0].text == "payload.size"
    assert again.get("whole").fields is None
    assert again.get("q").expression.native
    # the id counter survives the restart
    assert again.register("new", "x", address=200).id == 5


def test_close_open_callables(reg_path):
    reg = Registry(reg_path)
    reg.register("big", lambda s: s, fields=["size"], address=64)
    reg.register("t", "type", address=64)
    again = Registry(reg_path)
    closed = again.close_open_callables(500)
    assert [p.name for p in closed] == ["big"]
    big = again.get("big")
    assert big.ranges == [(64, 500)] and not big.active
    assert again.get("t").active
    assert again.close_open_callables(600) == []
    # the same callable fields resume the id; other fields get a new one
    assert again.register("big", lambda s: s, fields=["size"], address=600).id == big.id
    assert big.ranges == [(64, 500), (600, None)] and not big.needs_callable
    again.deregister("big", 700)
    assert again.register("big", lambda s: s, fields=["other"], address=800).id != big.id


def test_callable_and_expression_never_share_an_id(reg_path):
    reg = Registry(reg_path)
    a = reg.register("n", lambda r: 1, address=64)
    reg.deregister("n", 70)
    b = reg.register("n", "type", address=80)
    assert b.id != a.id
    reg.deregister("n", 90)
    c = reg.register("n", lambda r: 1, address=100)
    assert c.id not in (a.id, b.id)


def test_atomic_save_leaves_no_temp_files_and_survives_failure(reg_path, monkeypatch):
    reg = Registry(reg_path)
    reg.register("t", "type", address=64)
    assert sorted(os.listdir(reg_path.parent)) == ["psfs.json"]
    before = reg_path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)  # the one os module, as shoal.files uses it
    with pytest.raises(NativeIOError, match="psfs.json failed: disk on fire"):  # the library's error, naming the file
        reg.register("u", "type", address=64)
    monkeypatch.undo()
    assert reg_path.read_bytes() == before
    assert sorted(os.listdir(reg_path.parent)) == ["psfs.json"]
    assert [p.name for p in Registry(reg_path).all()] == ["t"]


def test_every_change_is_saved(reg_path):
    reg = Registry(reg_path)
    reg.register("t", "type", address=64)
    assert json.loads(reg_path.read_text())["psfs"][0]["ranges"] == [[64, None]]
    reg.deregister("t", 90)
    assert json.loads(reg_path.read_text())["psfs"][0]["ranges"] == [[64, 90]]


def test_in_memory_registry():
    reg = Registry(None)
    reg.register("t", "type", address=64)
    reg.save()
    assert reg.get("t").id == 0


@pytest.mark.parametrize("content", [b"not json", b"{}", b'{"version": 99}',
                                     b'{"version":1,"next_id":0,"psfs":[{"id":0,"name":"a","kind":"projection",'
                                     b'"definition":"a","fields":null,"ranges":[]}],"retired":[]}'])
def test_corrupt_file(reg_path, content):
    reg_path.write_bytes(content)
    with pytest.raises(CorruptionError):
        Registry(reg_path)


def test_truncate_after_recovery(reg_path):
    reg = Registry(reg_path)
    a = reg.register("a", "a", address=64)
    reg.deregister("a", 500)
    b = reg.register("b", "b", address=300)
    c = reg.register("c", "c", address=900)
    d = reg.register("d", "d", address=700)
    reg.deregister("d", 800)
    reg.truncate(400)
    assert a.ranges == [(64, 400)]
    assert b.ranges == [(300, None)]
    assert c.ranges == [(400, None)]
    assert d.ranges == []
    assert Registry(reg_path).get("c").ranges == [(400, None)]
    e = reg.register("e", "e", address=400)
    reg.deregister("e", 450)
    reg.register("e", "e", address=470)
    reg.truncate(450)
    assert e.ranges == [(400, None)]


def _psf(ranges):
    return PSF(id=0, name="x", definition="x", kind=PSFKind.PROJECTION, fields=None, ranges=list(ranges))


def test_active_at_and_inactive_ranges():
    p = _psf([(100, 200), (300, None)])
    assert not active_at(p, 99) and active_at(p, 100) and active_at(p, 199)
    assert not active_at(p, 200) and active_at(p, 300) and active_at(p, 10**12)
    assert p.active_at(150)
    assert inactive_ranges(p, 0, 1000) == [(0, 100), (200, 300)]
    assert inactive_ranges(p, 150, 250) == [(200, 250)]
    assert inactive_ranges(p, 120, 180) == []
    assert inactive_ranges(p, 400, 500) == []
    assert inactive_ranges(p, 200, 300) == [(200, 300)]
    assert inactive_ranges(p, 50, 60) == [(50, 60)]
    assert inactive_ranges(_psf([]), 10, 20) == [(10, 20)]
    assert inactive_ranges(_psf([(100, 200)]), 0, 1000) == [(0, 100), (200, 1000)]
    assert inactive_ranges(p, 5, 5) == []


def test_inactive_ranges_matches_active_at_pointwise():
    import random

    rng = random.Random(7)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, 60), rng.randrange(0, 8)))
        ranges = [(cuts[i], cuts[i + 1]) for i in range(0, len(cuts) - 1, 2)]
        if rng.random() < 0.5:
            ranges.append((max(cuts, default=0) + rng.randrange(0, 3), None))
        p = _psf(ranges)
        lo = rng.randrange(0, 70)
        hi = rng.randrange(lo, 75)
        gaps = inactive_ranges(p, lo, hi)
        covered = {a for x, y in gaps for a in range(x, y)}
        assert covered == {a for a in range(lo, hi) if not active_at(p, a)}
        assert all(x < y for x, y in gaps)
        assert all(gaps[i][1] < gaps[i + 1][0] for i in range(len(gaps) - 1))


def _size(size):
    return size


def _size_plus_one(size):
    return size + 1 if size is not None else None


def _threshold(n):
    return lambda size: size is not None and size > n


def test_a_different_callable_never_resumes_an_id(reg_path):
    reg = Registry(reg_path)
    a = reg.register("s", _size, fields=["payload.size"], address=64)
    reg.deregister("s", 100)
    b = reg.register("s", _size_plus_one, fields=["payload.size"], address=200)
    assert b.id != a.id and b.ranges == [(200, None)] and reg.by_id(a.id) is a
    reg.deregister("s", 300)
    # same code, different closure value: different function
    c = reg.register("s", _threshold(3), fields=["payload.size"], address=400)
    reg.deregister("s", 500)
    d = reg.register("s", _threshold(4), fields=["payload.size"], address=600)
    assert len({a.id, b.id, c.id, d.id}) == 4
    reg.deregister("s", 700)
    assert reg.register("s", _threshold(4), fields=["payload.size"], address=800) is d


def test_the_same_callable_resumes_after_reload(reg_path):
    reg = Registry(reg_path)
    a = reg.register("s", _size, fields=["payload.size"], address=64)
    again = Registry(reg_path)
    again.close_open_callables(100)
    b = again.register("s", _size, fields=["payload.size"], address=120)
    assert b.id == a.id and b.ranges == [(64, 100), (120, None)] and b.func is _size
    third = Registry(reg_path)
    third.close_open_callables(150)
    c = third.register("s", _size_plus_one, fields=["payload.size"], address=160)
    assert c.id != a.id


def test_callables_without_code_never_resume(reg_path):
    import functools

    reg = Registry(reg_path)
    f = functools.partial(max, 0)
    a = reg.register("m", f, address=64)
    reg.deregister("m", 70)
    assert reg.register("m", f, address=80).id != a.id


def test_fingerprint_ignores_line_numbers():
    from shoal.psf.entry import callable_fingerprint

    src = "def f(x):\n    return x + 1\n"
    ns1, ns2 = {}, {}
    exec(compile(src, "<a>", "exec"), ns1)
    exec(compile("\n\n\n" + src, "<b>", "exec"), ns2)
    assert callable_fingerprint(ns1["f"]) == callable_fingerprint(ns2["f"])
    exec(compile(src.replace("1", "2"), "<c>", "exec"), ns2)
    assert callable_fingerprint(ns1["f"]) != callable_fingerprint(ns2["f"])
    assert callable_fingerprint(len) is None


@pytest.mark.slow
def test_churn_keeps_psfs_json_bounded(reg_path, monkeypatch):
    """Thousands of register/deregister cycles, records arriving between
    them: the same names again (ranges pile up), other definitions under the
    same name (retired PSFs), and new names. psfs.json stops growing (was:
    one range, or one PSF, more per cycle, for good)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # what is written matters here, not its durability
    monkeypatch.setattr(registry_mod, "MAX_RANGES", 16)
    reg = Registry(reg_path, max_active=4, max_inactive=8)
    address, sizes = 64, []
    for cycle in range(700):  # 2,100 register/deregister cycles
        names = [("same", "type"), ("redef", f"payload.size > `{cycle % 7}`"), (f"new{cycle}", "repo.name")]
        for name, definition in names:
            reg.register(name, definition, address=address, begin=64)
            address += 40  # records arrive while it is active
        for name, _ in names:
            reg.deregister(name, address, begin=64)
            address += 24  # and while it is not
        sizes.append(reg_path.stat().st_size)
        assert len(reg.all()) + len(reg.retired()) <= 4 + 8
        assert len(reg.get("same").ranges) <= 16
    assert max(sizes[100:]) <= max(sizes[:100]) * 1.05, (max(sizes[:100]), max(sizes[100:]))
    again = Registry(reg_path)
    assert [p.name for p in again.all()] == [p.name for p in reg.all()]
    assert again.get("same").ranges == reg.get("same").ranges


def test_ranges_below_begin_are_dropped(reg_path):
    reg = Registry(reg_path)
    p = reg.register("t", "type", address=64)
    for k in range(1, 5):
        reg.deregister("t", 100 * k)
        reg.register("t", "type", address=100 * k + 50)
    assert p.ranges == [(64, 100), (150, 200), (250, 300), (350, 400), (450, None)]
    reg.deregister("t", 500, begin=300)  # the log below 300 was compacted away
    assert p.ranges == [(350, 400), (450, 500)]
    assert json.loads(reg_path.read_text())["psfs"][0]["ranges"] == [[350, 400], [450, 500]]


@pytest.mark.slow
def test_ids_never_run_out():
    """More registrations than there are psf_ids, each PSF deregistered
    after: the registry forgets the oldest inactive ones and reuses their
    ids (was: PSFError after 65,535 registrations, for good)."""
    reg = Registry(None, max_active=2, max_inactive=2)
    n = registry_mod.lib.SHOAL_MAX_KPS + 100
    for i in range(n):
        p = reg.register(f"p{i}", "a", address=64 + 8 * i)
        reg.deregister(p.name, 64 + 8 * i + 8)
    assert p.id < registry_mod.lib.SHOAL_MAX_KPS and len(reg.all()) == 2
