"""Counting accuracy over sets of clips: per generator, per scenario, per split
(tuning / held out), entries and exits apart.

``python -m face.footfall.report CLIP_DIR... [--detector fusion] [--set k=v]
[--split tuning] [--json OUT]`` runs ``footfall eval`` on every ``*.truth.json``
under the folders (the clip beside it) and prints one table. Used to choose
thresholds on the tuning clips and to report the held-out ones.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from face.footfall.config import FootfallConfig
from face.footfall.evaluate import evaluate_video


def clip_of(truth: Path) -> Path | None:
    stem = truth.name[: -len(".truth.json")]
    for ext in (".mp4", ".avi"):
        v = truth.with_name(stem + ext)
        if v.is_file():
            return v
    return None


def clip_meta(truth: Path) -> dict[str, Any]:
    doc = json.loads(truth.read_text(encoding="utf-8"))
    return {
        "generator": doc.get("generator", "synth"),
        "scenario": doc.get("scenario") or truth.name[: -len(".truth.json")],
        "split": doc.get("split", "tuning"),
        "seed": doc.get("seed"),
    }


def summarise(rows: Iterable[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Rows grouped by ``keys``: true/counted entries and exits, their errors,
    and misses and extra counts, summed over the group."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        k = tuple(r[x] for x in keys)
        g = groups.setdefault(
            k,
            {**{x: r[x] for x in keys}, "clips": 0}
            | {
                f"{d}_{f}": 0 for d in ("in", "out") for f in ("true", "counted", "missed", "extra")
            },
        )
        g["clips"] += 1
        for d in ("in", "out"):
            for f in ("true", "counted", "missed", "extra"):
                g[f"{d}_{f}"] += int(r[f"{d}_{f}"])
    out = []
    for g in groups.values():
        for d in ("in", "out"):
            t = g[f"{d}_true"]
            wrong = g[f"{d}_missed"] + g[f"{d}_extra"]
            g[f"{d}_error"] = round(abs(g[f"{d}_counted"] - t) / t, 4) if t else None
            g[f"{d}_wrong"] = round(wrong / t, 4) if t else (None if wrong == 0 else float(wrong))
        out.append(g)
    return sorted(out, key=lambda g: tuple(str(g[x]) for x in keys))


def row_of(meta: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    d = doc["directions"]
    r = dict(meta)
    for key, name in (("in", "entries"), ("out", "exits")):
        r[f"{key}_true"] = d[name]["true"]
        r[f"{key}_counted"] = d[name]["counted"]
        r[f"{key}_missed"] = d[name]["missed"] or 0
        r[f"{key}_extra"] = d[name]["extra"] or 0
    r["fps"] = doc["processing"]["fps"]
    return r


def evaluate_dirs(
    dirs: Sequence[Path],
    factory: Callable[..., Any],
    config: FootfallConfig,
    *,
    split: str | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for d in dirs:
        for truth in sorted(d.glob("*.truth.json")):
            meta = clip_meta(truth)
            if split and meta["split"] != split:
                continue
            video = clip_of(truth)
            if video is None:
                continue
            doc = evaluate_video(video, truth, factory, config)
            row = row_of(meta, doc)
            row["clip"] = video.name
            rows.append(row)
            if log:
                log(
                    f"{video.name}: in {row['in_counted']}/{row['in_true']} "
                    f"out {row['out_counted']}/{row['out_true']} "
                    f"missed {row['in_missed'] + row['out_missed']} "
                    f"extra {row['in_extra'] + row['out_extra']}"
                )
    return rows


def _parse_set(items: Sequence[str], cfg: FootfallConfig) -> FootfallConfig:
    changes: dict[str, Any] = {}
    for item in items:
        k, _, v = item.partition("=")
        cur = getattr(cfg, k)
        changes[k] = type(cur)(v) if cur is not None else float(v)
    return replace(cfg, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from face.footfall.service import make_pipeline_factory
    from terminal.config.settings import load_settings

    ap = argparse.ArgumentParser(prog="python -m face.footfall.report")
    ap.add_argument("dirs", type=Path, nargs="+")
    ap.add_argument("--detector", default="fusion", choices=("face", "person", "fusion"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--split", choices=("tuning", "held_out"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    settings = load_settings()
    cfg = _parse_set(args.set, replace(FootfallConfig(), detector=args.detector))
    factory = make_pipeline_factory(cfg, pack_dir=settings.face_pack_dir)
    rows = evaluate_dirs(
        args.dirs, factory, cfg, split=args.split, log=lambda s: print(s, file=sys.stderr)
    )
    table = {
        "rows": rows,
        "by_split": summarise(rows, ("generator", "split")),
        "by_scenario": summarise(rows, ("generator", "split", "scenario")),
    }
    if args.json:
        args.json.write_text(json.dumps(table, indent=1), encoding="utf-8")
    for g in table["by_split"]:
        print(json.dumps(g))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
