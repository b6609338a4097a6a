"""A DDI server that follows Eclipse hawkBit's DDI API v1 for the parts
goosebit does not implement (cancel actions, the confirmation flow, the
installed base, maintenance windows, sha256/md5 hashes, download-http links)
plus fault injection (dropped downloads, 503 with Retry-After).

It is a test double for the *server*; the client under test is the real one.
Real hawkBit is a Java service that cannot be installed here (no Maven / no
container registry reachable), so the end-to-end proofs run against goosebit
and these protocol details against this server, written from the DDI
OpenAPI description.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HawkbitLike:
    def __init__(
        self,
        *,
        tenant: str = "DEFAULT",
        token: str = "s3cret-token",
        sleep: str = "00:05:00",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.tenant = tenant
        self.token = token
        self.sleep = sleep
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.feedback: list[tuple[str, str, dict[str, Any]]] = []  # (kind, action, body)
        self.config_data: list[dict[str, Any]] = []
        self.artifact = b""
        self.action: dict[str, Any] | None = (
            None  # {"id", "state": "open"|"confirm"|"cancel", "window"}
        )
        self.installed_action: str | None = None
        self.auto_confirm = False
        self.drop_after: int | None = None  # cut the next download after this many bytes
        self.fail_next: list[tuple[int, str | None]] = []  # (status, Retry-After)
        self.download_host: str | None = None  # serve artifact links on another origin
        self.request_config = True
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _json(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/hal+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length", "0"))
                return json.loads(self.rfile.read(n)) if n else None

            def _route(self, method: str) -> None:
                with srv.lock:
                    srv.requests.append((method, self.path, dict(self.headers)))
                    if srv.fail_next:
                        status, ra = srv.fail_next.pop(0)
                        self.send_response(status)
                        if ra:
                            self.send_header("Retry-After", ra)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                base = f"/{srv.tenant}/controller/v1/"
                path = self.path.split("?")[0]
                if path.startswith("/artifacts/"):
                    return self._download()
                if not path.startswith(base):
                    return self._json(404, {"message": "not found"})
                if self.headers.get("Authorization") != f"TargetToken {srv.token}":
                    return self._json(401, {"message": "unauthorized"})
                parts = path[len(base) :].split("/")
                ctrl = parts[0]
                rest = parts[1:]
                root = srv.url + base + ctrl
                if method == "GET" and not rest:
                    return self._json(200, srv.controller_base(root))
                if method == "PUT" and rest == ["configData"]:
                    srv.config_data.append(self._body())
                    srv.request_config = False
                    return self._json(200, {})
                if method == "GET" and rest[:1] == ["deploymentBase"] and len(rest) == 2:
                    return self._json(200, {"id": rest[1], "deployment": srv.deployment(rest[1])})
                if method == "GET" and rest[:1] == ["installedBase"] and len(rest) == 2:
                    return self._json(200, {"id": rest[1], "deployment": srv.deployment(rest[1])})
                if method == "GET" and rest[:1] == ["confirmationBase"] and len(rest) == 2:
                    return self._json(200, {"id": rest[1], "confirmation": srv.deployment(rest[1])})
                if method == "GET" and rest == ["confirmationBase"]:
                    return self._json(
                        200,
                        {"autoConfirm": {"state": "active" if srv.auto_confirm else "inactive"}},
                    )
                if method == "GET" and rest[:1] == ["cancelAction"] and len(rest) == 2:
                    return self._json(
                        200, {"id": rest[1], "cancelAction": {"stopId": srv.action["id"]}}
                    )
                if method == "POST" and len(rest) == 3 and rest[2] == "feedback":
                    body = self._body()
                    with srv.lock:
                        srv.feedback.append((rest[0], rest[1], body))
                        srv.on_feedback(rest[0], rest[1], body)
                    return self._json(200, {})
                if (
                    method == "POST"
                    and rest[:1] == ["confirmationBase"]
                    and rest[1:] in (["activateAutoConfirm"], ["deactivateAutoConfirm"])
                ):
                    self._body()
                    srv.auto_confirm = rest[1] == "activateAutoConfirm"
                    return self._json(200, {})
                return self._json(404, {"message": "not found"})

            def _download(self) -> None:
                data = srv.artifact
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                chunk = data[start:]
                if srv.drop_after is not None:
                    cut, srv.drop_after = srv.drop_after, None
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

            def do_GET(self) -> None:
                self._route("GET")

            def do_PUT(self) -> None:
                self._route("PUT")

            def do_POST(self) -> None:
                self._route("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if ssl_context else "http"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    # -- behaviour ---------------------------------------------------------------------------

    def controller_base(self, root: str) -> dict[str, Any]:
        links: dict[str, dict[str, str]] = {}
        if self.request_config:
            links["configData"] = {"href": root + "/configData"}
        a = self.action
        if a is not None:
            if a["state"] == "open":
                links["deploymentBase"] = {"href": f"{root}/deploymentBase/{a['id']}?c=-2129030598"}
            elif a["state"] == "confirm":
                links["confirmationBase"] = {
                    "href": f"{root}/confirmationBase/{a['id']}?c=-2122565939"
                }
            elif a["state"] == "cancel":
                links["cancelAction"] = {"href": f"{root}/cancelAction/{a['id']}"}
        if self.installed_action:
            links["installedBase"] = {"href": f"{root}/installedBase/{self.installed_action}"}
        return {"config": {"polling": {"sleep": self.sleep}}, "_links": links}

    def deployment(self, action_id: str) -> dict[str, Any]:
        host = self.download_host or self.url
        data = self.artifact
        dep: dict[str, Any] = {
            "download": "forced",
            "update": "forced",
            "chunks": [
                {
                    "part": "os",
                    "version": "1.1.0",
                    "name": "care-terminal",
                    "metadata": [{"key": "channel", "value": "stable"}],
                    "artifacts": [
                        {
                            "filename": "care-terminal-1.1.0.swu",
                            "size": len(data),
                            "hashes": {
                                "sha1": hashlib.sha1(data).hexdigest(),
                                "md5": hashlib.md5(data).hexdigest(),
                                "sha256": hashlib.sha256(data).hexdigest(),
                            },
                            "_links": {
                                "download": {"href": f"{host}/artifacts/{action_id}/care.swu"},
                                "download-http": {"href": f"{host}/artifacts/{action_id}/care.swu"},
                                "md5sum": {"href": f"{host}/artifacts/{action_id}/care.swu.MD5SUM"},
                            },
                        }
                    ],
                }
            ],
        }
        if self.action and self.action.get("window"):
            dep["maintenanceWindow"] = self.action["window"]
        return dep

    def on_feedback(self, kind: str, action_id: str, body: dict[str, Any]) -> None:
        if kind == "confirmationBase" and body.get("confirmation") == "confirmed" and self.action:
            self.action["state"] = "open"
        if kind == "cancelAction" and body["status"]["execution"] == "closed":
            self.action = None
        if kind == "deploymentBase" and body["status"]["execution"] == "closed":
            if body["status"]["result"]["finished"] == "success":
                self.installed_action = action_id
            self.action = None

    def executions(self, kind: str = "deploymentBase") -> list[str]:
        return [
            b["status"]["execution"] for k, _, b in self.feedback if k == kind and "status" in b
        ]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
