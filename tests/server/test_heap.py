"""The worker's collector settings (gateway.server.run.settle_heap)."""

from __future__ import annotations

import gc

from gateway.server.run import GC_YOUNG_THRESHOLD, settle_heap


def test_startup_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000  # this process's modules at least
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, before[1], before[2])
        assert before[0] < GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
