"""Passive footfall counting (无感测流量): visits, unique visitors and attendance
from a camera, with privacy by construction.

Modules (pure ones do no IO):

* ``counting``  - pure: line geometry, hysteresis, per-track crossing state, occlusion stitching
* ``identity``  - pure: anonymous daily visitors (in memory only), attendance sessions,
  staff/attendee decision
* ``aggregate`` - pure: hourly buckets
* ``detectors`` - face detector adapter (default); ``person_model`` - SSDLite body detector
* ``fusion``    - pure: face and body cues into one head per person, the fused tracker,
  splitting a blob between heads side by side
* ``fused``     - ``detector = "fusion"``: faces, SSDLite bodies and moving blobs behind the
  pipeline's detector and tracker interfaces
* ``tracking``  - ByteTrack (Roboflow ``trackers``) adapter
* ``pipeline``  - detect -> track -> count -> who -> aggregate, per frame
* ``store``     - outbox records (``footfall_hourly``, ``attendance``) and ``footfall_summary``
* ``service``   - ``footfall run``: the background service the app starts and stops
* ``evaluate``  - ``footfall eval VIDEO --truth FILE``
* ``bench``     - ``bench footfall``
* ``synth``     - synthetic test clips with exact ground truth
* ``doorway``   - a second, independent clip generator (a camera facing a door, H.264)
* ``report``    - ``footfall eval`` over folders of clips, per generator, split and scenario
"""
