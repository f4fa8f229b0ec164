"""A shard's sequence marks (shoal/cluster/marks.py), without Ray: their
order, their file, and what a crash leaves."""
from __future__ import annotations

from array import array

from shoal.cluster.marks import MARKS_FILE, Marks


def test_marks_keep_seqs_increasing_and_persist(tmp_path):
    m = Marks(tmp_path)
    assert m.add(64, 100) == 100
    assert m.add(1000, 90) == 101  # a late piece (another front's clock): raised
    assert m.add(1000, 200) == 200  # the piece before stored nothing: replaced
    assert m.add(5000, 300) == 300
    m.close()
    m = Marks(tmp_path)
    assert list(m.addresses) == [64, 1000, 5000] and list(m.seqs) == [100, 200, 300]
    assert list(m.seq_of(array("Q", [64, 999, 1000, 4999, 5000, 9000, 10]))) == [100, 100, 200, 200, 300, 300, 0]
    m.close()


def test_marks_past_the_tail_are_dropped_and_a_torn_mark_ignored(tmp_path):
    m = Marks(tmp_path)
    for a, s in ((64, 10), (1000, 20), (5000, 30), (9000, 40)):
        m.add(a, s)
    m.close()
    with open(tmp_path / MARKS_FILE, "ab") as f:
        f.write(b"\x01\x02\x03")  # a torn last mark
    m = Marks(tmp_path)
    assert list(m.addresses) == [64, 1000, 5000, 9000]
    # a crash lost the records from 2000 on: the next piece starts there
    assert m.add(2000, 50) == 50
    assert list(m.addresses) == [64, 1000, 2000] and list(m.seqs) == [10, 20, 50]
    m.close()
    m = Marks(tmp_path)
    assert list(m.addresses) == [64, 1000, 2000] and list(m.seqs) == [10, 20, 50]
    assert (tmp_path / MARKS_FILE).stat().st_size == 3 * 16
    m.close()
