"""A simulated receipt printer for the demo: the real serial printer adapter
writes ESC/POS to one end of a pty; this peer answers the status queries like
an online printer with paper, and appends each receipt as readable text to a
file, so a demo payment ends with a printed receipt instead of "ask staff to
reprint"."""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
import tty
from pathlib import Path

# Commands the receipt renderer uses, removed before decoding the text.
_COMMANDS = re.compile(
    rb"\x1b@|\x1c&|\x1c\.|\x1ba[\x00-\x02]|\x1bE[\x00\x01]|\x1d![\x00-\xff]|\x1c![\x00-\xff]"
    rb"|\x1bd[\x00-\xff]|\x1dV[\x41\x42][\x00-\xff]|\x10\x04[\x01-\x04]"
)
_STATUS_ANSWERS = {1: 0x16, 2: 0x12, 3: 0x12, 4: 0x12}  # online, cover closed, no error, paper ok
_CUT = re.compile(rb"\x1dV[\x41\x42][\x00-\xff]")


class DemoPrinter:
    def __init__(self, out_file: Path) -> None:
        self.out_file = out_file
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._buf = b""
        self._thread = threading.Thread(target=self._serve, name="demo-printer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 65536)
            except OSError:
                return
            for m in re.finditer(rb"\x10\x04([\x01-\x04])", data):
                os.write(self._master, bytes([_STATUS_ANSWERS[m.group(1)[0]]]))
            self._buf += data
            while (cut := _CUT.search(self._buf)) is not None:
                receipt, self._buf = self._buf[: cut.end()], self._buf[cut.end() :]
                text = _COMMANDS.sub(b"", receipt).decode("gb18030", errors="replace")
                with self.out_file.open("a", encoding="utf-8") as fh:
                    fh.write(text.rstrip("\n") + "\n" + "=" * 32 + "\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
