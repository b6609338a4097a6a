"""Model packs: weights as verified data, one system for every model the terminal loads.

A model pack is a folder of model files plus ``manifest.json`` naming each
file, its sha256 and size, its *role*, its decoder and preprocessing, its
licence and where it came from. Every pack is verified before anything in it
is loaded; the terminal refuses a pack it cannot verify.

Kinds of pack and the roles their manifests declare:

``open`` (the default face pack)
    detector, landmarks68, embedding (recognition), liveness, detector_alt;
    built from registry packages with pinned hashes.
``insightface``
    a licensed face pack copied onto the device and sealed there.
``person``
    person_detector, the footfall body detector for overhead cameras;
    built from a registry package with a pinned hash.

Which module does what:

:mod:`face.packs.manifest`
    the manifest document (pydantic, ``extra="forbid"``): kinds, roles and
    which roles each kind holds; reading, parsing and writing ``manifest.json``.
:mod:`face.packs.catalogue`
    the packs built from registry packages (:data:`~face.packs.catalogue.OPEN_PACK`,
    :data:`~face.packs.catalogue.PERSON_PACK`): their packages, files, pinned
    hashes, preprocessing and licence notes.
:mod:`face.packs.verify`
    :func:`~face.packs.verify.verify_pack` (every file's size and sha256, the
    required roles, the pinned hashes of catalogue kinds) and
    :func:`~face.packs.verify.list_packs`.
:mod:`face.packs.fetch`
    :func:`~face.packs.fetch.fetch_pack`: build a catalogue pack from its
    registry packages (registry clients, offline cache, allow-listed archive
    members, atomic install).
:mod:`face.packs.seal`
    :func:`~face.packs.seal.seal_pack`: hash a folder of model files into a
    manifest (insightface-layout packs; catalogue packs copied by hand).

The model code that uses a pack stays with that model: the face engine
(:mod:`face.pipeline`, :mod:`face.onnx_models`) and the person detector
(:mod:`face.footfall.person_model`) ask a verified manifest for a role's file.
"""
