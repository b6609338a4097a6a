"""Peripherals: the only pyserial user.

* :mod:`terminal.hw.escpos` - IO-free ESC/POS codec (GB18030 receipts, status bytes).
* :mod:`terminal.hw.cardreader` - IO-free GA/T 467 ID-card frames, base-info decoding,
  the find/select/read poller, and the keyboard-wedge IC card parser.
* :mod:`terminal.hw.ports` - port owner threads (reconnecting) and the ``Printer``,
  ``IdCardReader`` and ``KeyboardWedgeReader`` adapters.
"""
