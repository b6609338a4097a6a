"""Gallery storage, 1:N search and the accept / uncertain / unknown rule."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from face.gallery import NO_SCORE, Gallery, GalleryError, Match, decide, decide_with, normalise
from terminal.config.settings import FaceSettings
from terminal.core.identification import LivenessDecision

DIM = 512


def unit(rng: np.random.Generator, n: int = 1, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(base: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """A template of the same face: base plus a little noise."""
    v = base + noise * rng.standard_normal(base.shape).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def brute_force(templates: dict[str, np.ndarray], q: np.ndarray, k: int) -> list[tuple[str, float]]:
    q = q / np.linalg.norm(q)
    best = {rid: float(np.max(t @ q)) for rid, t in templates.items()}
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


# ------------------------------------------------------------------ the decision rule

A, B = "res-A", "res-B"


@pytest.mark.parametrize(
    ("scores", "accept", "uncertain", "margin", "decision", "who"),
    [
        # clear winner
        ([0.80, 0.30], 0.50, 0.40, 0.08, "identified", A),
        # only one resident enrolled: no second identity, margin cannot fail
        ([0.55], 0.50, 0.40, 0.08, "identified", A),
        # exactly at the accept threshold counts
        ([0.50, 0.10], 0.50, 0.40, 0.08, "identified", A),
        # exactly at the margin counts (0.60 - 0.52 is 0.0799999... in floating point)
        ([0.60, 0.52], 0.50, 0.40, 0.08, "identified", A),
        # above accept but too close to the second-best resident
        ([0.70, 0.65], 0.50, 0.40, 0.08, "uncertain", A),
        # between uncertain and accept
        ([0.45, 0.10], 0.50, 0.40, 0.08, "uncertain", A),
        # exactly at the uncertain threshold
        ([0.40], 0.50, 0.40, 0.08, "uncertain", A),
        # below uncertain
        ([0.39, 0.38], 0.50, 0.40, 0.08, "unknown", None),
        # negative similarity
        ([-0.2], 0.50, 0.40, 0.08, "unknown", None),
        # empty gallery
        ([], 0.50, 0.40, 0.08, "unknown", None),
        # margin 0 turns a tie above accept into an identification of the first
        ([0.70, 0.70], 0.50, 0.40, 0.0, "identified", A),
        # uncertain == accept: no uncertain band at all
        ([0.49, 0.10], 0.50, 0.50, 0.08, "unknown", None),
        # results given out of order are ordered by score
        ([0.30, 0.90], 0.50, 0.40, 0.08, "identified", B),
    ],
)
def test_decision_rule(scores, accept, uncertain, margin, decision, who) -> None:
    results = [Match(rid, s, 1) for rid, s in zip([A, B, "res-C"], scores, strict=False)]
    ident = decide(results, accept, uncertain, margin)
    assert ident.decision == decision
    assert ident.resident_id == who
    ordered = sorted(scores, reverse=True)
    assert ident.score == (ordered[0] if ordered else NO_SCORE)
    assert ident.second_score == (ordered[1] if len(ordered) > 1 else NO_SCORE)
    assert ident.threshold == accept
    assert ident.margin == margin


def test_decide_with_settings_and_liveness() -> None:
    settings = FaceSettings(accept_threshold=0.6, uncertain_threshold=0.5, min_margin=0.1)
    live = LivenessDecision(live=True, method="passive", signals={"passive": 0.9})
    results = [Match(A, 0.65, 3), Match(B, 0.50, 2)]
    ident = decide_with(results, settings, liveness=live)
    assert (ident.decision, ident.resident_id, ident.threshold, ident.margin) == (
        "identified",
        A,
        0.6,
        0.1,
    )
    assert ident.liveness is live
    strict = FaceSettings(accept_threshold=0.7, uncertain_threshold=0.6, min_margin=0.1)
    assert decide_with(results, strict).decision == "uncertain"


@pytest.mark.parametrize(
    ("accept", "uncertain", "margin", "message"),
    [(0.4, 0.5, 0.08, "uncertain threshold"), (0.5, 0.4, -0.1, "margin")],
)
def test_decide_refuses_inconsistent_thresholds(accept, uncertain, margin, message) -> None:
    with pytest.raises(GalleryError, match=message):
        decide([Match(A, 0.9, 1)], accept, uncertain, margin)


# ------------------------------------------------------------------ storage


def test_add_normalises_and_counts() -> None:
    g = Gallery(capacity=2)
    assert g.add(A, np.full((2, DIM), 3.0)) == 2
    assert g.add(B, np.ones(DIM) * 0.001) == 1
    assert len(g) == 3 and g.identity_count == 2
    assert g.capacity >= 3  # grew from 2
    assert g.identities() == [A, B]
    assert g.template_count(A) == 2 and A in g and "nobody" not in g
    m = g.matrix()
    assert m.dtype == np.float32 and m.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        m[0, 0] = 5.0  # the view is read-only


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(128), "512 numbers"),
        (np.ones((2, 3, DIM)), "512 numbers"),
        (np.zeros(DIM), "all zeros"),
        (np.full(DIM, np.nan), "NaN"),
        (np.zeros((0, DIM)), "no templates"),
    ],
)
def test_bad_templates_are_refused_without_changing_anything(bad, message) -> None:
    g = Gallery()
    g.add(A, np.ones(DIM))
    with pytest.raises(GalleryError, match=message):
        g.add(B, bad)
    with pytest.raises(GalleryError, match=message):
        g.replace(A, bad)
    assert g.identities() == [A] and len(g) == 1


def test_empty_resident_id_refused() -> None:
    with pytest.raises(GalleryError, match="resident id"):
        Gallery().add("", np.ones(DIM))


def test_remove_replace_keep_other_residents_intact() -> None:
    rng = np.random.default_rng(1)
    g = Gallery(capacity=4)
    data = {f"r{i}": unit(rng, 1 + i % 3) for i in range(30)}
    for rid, t in data.items():
        g.add(rid, t)
    assert len(g) == sum(t.shape[0] for t in data.values())

    assert g.remove("r4") == 2
    assert g.remove("r4") == 0  # idempotent
    assert g.remove("never-enrolled") == 0
    del data["r4"]
    data["r7"] = unit(rng, 5)
    g.replace("r7", data["r7"])
    data["r0"] = np.vstack([data["r0"], unit(rng, 1)])
    g.add("r0", data["r0"][-1])

    assert g.identities() == sorted(data)
    assert len(g) == sum(t.shape[0] for t in data.values())
    for rid, t in data.items():
        got = g.templates_of(rid)
        # same set of rows (order inside a resident may change after compaction)
        assert got.shape == t.shape
        assert np.allclose(np.sort(got, axis=0), np.sort(t, axis=0), atol=1e-6)
    assert g.templates_of("r4").shape == (0, DIM)


def test_load_replaces_everything() -> None:
    rng = np.random.default_rng(2)
    g = Gallery()
    g.add("old", unit(rng))
    g.load([(A, unit(rng, 2)), (B, unit(rng, 3))])
    assert g.identities() == [A, B] and len(g) == 5
    g.clear()
    assert len(g) == 0 and g.search(unit(rng)[0]) == []


# ------------------------------------------------------------------ search


def test_search_returns_best_template_per_identity() -> None:
    rng = np.random.default_rng(3)
    base = unit(rng, 3)
    g = Gallery()
    # A has 4 near-identical templates that all beat B: B must still be second.
    g.add(A, near(np.repeat(base[:1], 4, axis=0), rng, 0.01))
    g.add(B, near(base[:1], rng, 0.6))
    g.add("C", base[2])
    q = near(base[0], rng, 0.01)
    res = g.search(q, k=3)
    assert [m.resident_id for m in res] == [A, B, "C"]
    assert res[0].score > res[1].score > res[2].score
    assert res[0].templates == 4 and res[1].templates == 1
    assert g.search(q, k=1)[0].resident_id == A
    with pytest.raises(GalleryError):
        g.search(q, k=0)


@pytest.mark.parametrize("blas", [False, True], ids=["numpy-loop", "blas"])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_search_matches_brute_force_after_churn(k: int, blas: bool, monkeypatch) -> None:
    if blas:  # large galleries take the BLAS path; force it on a small one
        monkeypatch.setattr("face.gallery.SINGLE_THREAD_MAX_ROWS", 0)
    rng = np.random.default_rng(10 + k)
    g = Gallery(capacity=8)
    data: dict[str, np.ndarray] = {}
    for step in range(400):
        rid = f"r{rng.integers(0, 60)}"
        op = rng.random()
        if op < 0.6:
            t = unit(rng, int(rng.integers(1, 4)))
            g.add(rid, t)
            data[rid] = np.vstack([data[rid], t]) if rid in data else t
        elif op < 0.8:
            g.remove(rid)
            data.pop(rid, None)
        else:
            t = unit(rng, int(rng.integers(1, 6)))
            g.replace(rid, t)
            data[rid] = t
        if step % 50 == 0 and data:
            q = near(next(iter(data.values()))[0], rng, 0.5)
            got = [(m.resident_id, m.score) for m in g.search(q, k=k)]
            want = brute_force(data, q, k)
            assert [r for r, _ in got] == [r for r, _ in want]
            assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def test_search_then_decide_identifies_enrolled_and_rejects_stranger() -> None:
    rng = np.random.default_rng(4)
    people = unit(rng, 50)
    g = Gallery()
    for i, p in enumerate(people):
        g.add(f"r{i}", near(np.repeat(p[None], 3, axis=0), rng, 0.03))
    hit = decide(g.search(near(people[17], rng, 0.03)), 0.5, 0.4, 0.08)
    assert (hit.decision, hit.resident_id) == ("identified", "r17")
    stranger = decide(g.search(unit(rng)[0]), 0.5, 0.4, 0.08)
    assert (stranger.decision, stranger.resident_id) == ("unknown", None)


def test_concurrent_search_and_enrolment() -> None:
    rng = np.random.default_rng(5)
    g = Gallery(capacity=2)
    anchor = unit(rng)[0]
    g.add("anchor", anchor)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                assert g.search(anchor, k=1)[0].resident_id == "anchor"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    t = threading.Thread(target=searcher)
    t.start()
    local = np.random.default_rng(6)
    for i in range(300):
        g.add(f"r{i}", unit(local, 2))  # forces several capacity doublings
        if i % 3 == 0:
            g.remove(f"r{i // 2}")
    stop.set()
    t.join(5)
    assert not t.is_alive() and not errors


def test_normalise_refuses_wrong_dimension() -> None:
    with pytest.raises(GalleryError):
        normalise(np.ones(10), DIM)
    out = normalise([[3.0, 4.0]], 2)
    assert out.tolist() == [[pytest.approx(0.6), pytest.approx(0.8)]]
