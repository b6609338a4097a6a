"""Count how often a face engine runs its detector and its passive liveness
model (the proof that ``observe`` analyses a frame once)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from face.pipeline import FaceEngine


@contextmanager
def counting(engine: FaceEngine) -> Iterator[dict[str, int]]:
    """Count the detector's and the passive model's runs."""
    calls = {"detect": 0, "liveness": 0}
    det, live = engine.detector, engine.liveness_model
    assert live is not None
    det_fn, live_fn = det.detect, live.score

    def detect(*a, **k):  # type: ignore[no-untyped-def]
        calls["detect"] += 1
        return det_fn(*a, **k)

    def score(*a, **k):  # type: ignore[no-untyped-def]
        calls["liveness"] += 1
        return live_fn(*a, **k)

    det.detect = detect  # type: ignore[method-assign]
    live.score = score  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        del det.detect
        del live.score
