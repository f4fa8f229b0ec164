"""The recorded begin address (store/begin.py): how many records a store
holds after recovering from a checkpoint older than a compaction."""
from __future__ import annotations

import shoal
from shoal.store import begin as B


def test_records_after_recovery_bookkeeping():
    rep = shoal.store.recovery.RecoveryReport(checkpoint_id=3, checkpoint_begin=1000, records_at_checkpoint=50,
                                              replayed_records=7)
    state = B.BeginState(5000, 120, {1000: 100})
    assert B.records_after_recovery(rep, state) == 50 - 20 + 7
    assert B.records_after_recovery(rep, B.BeginState(1000, 100, {})) == 57
    rep.checkpoint_id = None
    assert B.records_after_recovery(rep, state) == 7
