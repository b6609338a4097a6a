"""A network camera on loopback: an HTTP server that streams MJPEG
(``multipart/x-mixed-replace``), the way IP cameras do, with frames from a
callback. Tests point ``camera.source`` at :attr:`MjpegCamera.url`."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from collections.abc import Callable

import cv2
import numpy as np

Frame = Callable[[float], np.ndarray]  # monotonic time -> BGR image


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a camera that comes back takes its old port again
    daemon_threads = True


class MjpegCamera:
    def __init__(
        self, frame: Frame, *, fps: float = 15.0, path: str = "/stream.mjpg", port: int = 0
    ) -> None:
        self.frame = frame
        self.fps = fps
        self.path = path
        self.frames_sent = 0
        self._stop = threading.Event()
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                if self.path != peer.path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not peer._stop.is_set():
                        ok, jpg = cv2.imencode(".jpg", peer.frame(time.monotonic()))
                        assert ok
                        body = jpg.tobytes()
                        self.wfile.write(
                            b"--frame\r\nContent-Type: image/jpeg\r\n"
                            + f"Content-Length: {len(body)}\r\n\r\n".encode()
                            + body
                            + b"\r\n"
                        )
                        peer.frames_sent += 1
                        time.sleep(1.0 / peer.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self._server = _Server(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> MjpegCamera:
        self._thread.start()
        return self

    def stop(self) -> None:
        """The camera goes away: streams end and the port closes."""
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
