"""The kiosk application service: the runner that drives the payment flow from
camera, card reader and touch screen (:mod:`.runner`), the staff and manager
back end (:mod:`.backend`), staff PINs (:mod:`.pins`) and the day report's
file formats (:mod:`.reports`).

No Qt here: ``ui`` defines the ports (``ui.ports``) and the presentation model
(``ui.model``); this package implements them, and ``terminal.app`` wires it
up. Nothing below it (face, payment, sync, ui) imports it."""
