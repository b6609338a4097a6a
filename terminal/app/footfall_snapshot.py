"""The footfall line snapshot, for ``care-terminal footfall snapshot`` and the
staff screen (:class:`ui.presenters.footfall.LineSnapshotPort`): one picture
from the footfall camera with the configured counting line drawn on it. The
picture stays in memory; nothing of it is written unless the command is asked
to write a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from face.footfall.annotate import grab_frame, snapshot
from face.footfall.counting import LineSpec
from terminal.core.errors import TerminalError
from ui.presenters.footfall import LineSnapshot


class FootfallSnapshotError(TerminalError):
    code = "footfall_snapshot_unavailable"


@dataclass(frozen=True)
class LinePicture:
    picture: np.ndarray  # BGR, the line drawn on it
    size: tuple[int, int]  # width, height
    source: str
    problem: str | None


def line_picture(spec: str, line: LineSpec, camera: Any, *, timeout: float = 5.0) -> LinePicture:
    """Grab one frame from ``spec`` at the camera settings' size and draw
    ``line`` on it (:func:`face.footfall.annotate.snapshot`)."""
    image, name = grab_frame(
        spec, width=camera.width, height=camera.height, fps=camera.fps, timeout=timeout
    )
    picture, problem = snapshot(image, line)
    h, w = image.shape[:2]
    return LinePicture(picture, (w, h), name, problem)


class FootfallLineSnapshots:
    """A :class:`~ui.presenters.footfall.LineSnapshotPort` on the footfall
    camera named by ``source`` (None: the footfall counter shares the kiosk
    camera, which this process is already reading; then there is no separate
    picture to take)."""

    def __init__(
        self, source: str | None, line: LineSpec, camera: Any, *, timeout: float = 5.0
    ) -> None:
        self.source = source
        self.line = line
        self.camera = camera
        self.timeout = timeout

    @classmethod
    def from_settings(cls, settings: Any) -> FootfallLineSnapshots:
        from face.footfall.config import line_spec

        return cls(settings.footfall.source, line_spec(settings.footfall.line), settings.camera)

    @property
    def shared_camera(self) -> bool:
        return not self.source

    def line_snapshot(self) -> LineSnapshot:
        if not self.source:
            raise FootfallSnapshotError(
                "the footfall counter shares the kiosk camera (no [footfall] source): "
                "run 'care-terminal footfall snapshot' while the kiosk is stopped"
            )
        got = line_picture(self.source, self.line, self.camera, timeout=self.timeout)
        rgb = np.ascontiguousarray(got.picture[:, :, ::-1])
        w, h = got.size
        return LineSnapshot(
            rgb=rgb.tobytes(),
            width=w,
            height=h,
            x1=self.line.x1,
            y1=self.line.y1,
            x2=self.line.x2,
            y2=self.line.y2,
            inside=self.line.inside,
            face_px=self.line.face_px,
            source=got.source,
            problem=got.problem,
        )
