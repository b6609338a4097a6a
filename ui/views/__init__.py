"""PyQt6 views of the kiosk. Only this package (and ``ui.sounds``) imports Qt.

Views render view models from ``ui.presenters`` and emit intents; they never
call the database, the printer, the network or a model on the GUI thread.
"""
