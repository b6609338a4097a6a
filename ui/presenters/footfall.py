"""The footfall line snapshot for the staff screen: the port that fetches it
and what the page shows of it. Qt-free.

A technician sets ``[footfall.line]`` on site: the page shows the footfall
camera's current picture with the configured counting line, its inside side
(the arrow) and, for a camera facing the door, the head width of a person on
the threshold, plus the line's numbers as they are written in the
configuration, so the line can be checked after every change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ui.i18n import Translator


@dataclass(frozen=True, slots=True)
class LineSnapshot:
    """One picture of the footfall camera with the line drawn on it.

    ``rgb`` is ``height`` rows of ``width`` RGB pixels (8 bits each), the
    picture only: nothing of it is stored. The line is in the configuration's
    normalised coordinates (0..1 of the width and height)."""

    rgb: bytes
    width: int
    height: int
    x1: float
    y1: float
    x2: float
    y2: float
    inside: str  # below | above | left | right
    face_px: float  # > 0: a depth line (head width of a person on the threshold)
    source: str  # the camera's credential-free name
    problem: str | None = None  # why the line cannot count in this picture


class LineSnapshotPort(Protocol):
    @property
    def shared_camera(self) -> bool:
        """The counter reads the kiosk camera: no separate picture to take."""
        ...

    def line_snapshot(self) -> LineSnapshot:
        """Grab one picture now (may take a few seconds); raises a
        ``TerminalError`` with a message fit to show when there is none."""
        ...


@dataclass(frozen=True, slots=True)
class LineSnapshotVM:
    rows: tuple[tuple[str, str], ...]  # (label, value)
    problem: str | None  # a message fit to show, or None


def _pt(x: float, y: float) -> str:
    return f"({x:.2f}, {y:.2f})"


def present_line_snapshot(s: LineSnapshot, tr: Translator) -> LineSnapshotVM:
    px = (
        round(s.x1 * s.width),
        round(s.y1 * s.height),
        round(s.x2 * s.width),
        round(s.y2 * s.height),
    )
    if s.face_px > 0:
        kind = tr("footfall_line.kind.depth", px=f"{s.face_px:g}")
    else:
        kind = tr("footfall_line.kind.image")
    rows = (
        (tr("footfall_line.line"), f"{_pt(s.x1, s.y1)} → {_pt(s.x2, s.y2)}"),
        (tr("footfall_line.pixels"), f"({px[0]}, {px[1]}) → ({px[2]}, {px[3]})"),
        (tr("footfall_line.inside"), tr(f"footfall_line.side.{s.inside}")),
        (tr("footfall_line.kind"), kind),
        (tr("footfall_line.picture"), f"{s.width} × {s.height}  {s.source}"),
    )
    problem = tr("footfall_line.problem", message=s.problem) if s.problem else None
    return LineSnapshotVM(rows, problem)
