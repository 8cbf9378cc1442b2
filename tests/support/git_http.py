"""A git smart-HTTP server over TLS on 127.0.0.1: the real `git http-backend` run as CGI.

    pki = make_pki(tmp_path / "pki")
    with GitHttpServer(tmp_path / "served", pki, password="s3cr3t") as server:
        url = server.url("fleet")          # https://127.0.0.1:<port>/fleet
        ...
        server.stop(); server.start()      # down, then up again on the same port

Every repository (bare or not) under `root` is served. Each request must carry Basic auth for
`username`/`password` or `Bearer <token>` (a 401 with a Basic challenge otherwise); with
`client_cert=True` the TLS handshake requires a certificate signed by the test CA. The server
counts requests, records the Authorization headers it saw, and is stopped by the test that
started it; every wait is bounded.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from tests.support.daemon import free_port
from tests.support.tls import Pki

CGI_TIMEOUT_S = 30.0
SOCKET_TIMEOUT_S = 15.0


def _read_chunked(rfile: BinaryIO) -> bytes:
    body = b""
    while True:
        size = int(rfile.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while rfile.readline().strip():  # trailers
                pass
            return body
        body += rfile.read(size)
        rfile.readline()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TlsServer

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return _read_chunked(self.rfile)  # type: ignore[arg-type]
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _serve(self) -> None:
        body = self._body()  # read first: the connection is kept alive after a 401 too
        owner = self.server.owner
        user = owner.note(self.headers.get("Authorization"))
        if user is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._cgi(body, user)

    def _cgi(self, body: bytes, user: str) -> None:
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.server.owner.root),
            "GIT_PROJECT_ROOT": str(self.server.owner.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "PATH_INFO": path,
            "REQUEST_METHOD": self.command,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": user,
            "REMOTE_ADDR": self.client_address[0],
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.Popen(
            ["git", "http-backend"], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        timer = threading.Timer(CGI_TIMEOUT_S, proc.kill)
        timer.start()
        try:
            writer = threading.Thread(target=self._feed, args=(proc, body), daemon=True)
            writer.start()
            assert proc.stdout is not None
            self._relay(proc.stdout)
            writer.join(timeout=CGI_TIMEOUT_S)
            proc.wait(timeout=CGI_TIMEOUT_S)
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)

    @staticmethod
    def _feed(proc: subprocess.Popen[bytes], body: bytes) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(body)
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()

    def _relay(self, out: BinaryIO) -> None:
        """The CGI's `Status:` and headers as the response's, then its body, chunked."""
        status, headers = 200, []
        while True:
            line = out.readline().decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            else:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while chunk := out.read1(65536):  # type: ignore[attr-defined]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: GitHttpServer

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The handshake in the request's thread, not in accept(): a client that stalls or
        # fails it holds up no one else.
        request.settimeout(SOCKET_TIMEOUT_S)
        try:
            tls = self.owner.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.owner.handshake_failures += 1
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-response (git gives up on a 401, a test stops)


class GitHttpServer:
    def __init__(
        self,
        root: Path,
        pki: Pki,
        username: str = "device",
        password: str | None = None,
        token: str | None = None,
        client_cert: bool = False,
    ) -> None:
        if shutil.which("git") is None:
            raise RuntimeError("git is not installed")
        self.root = root
        self.port = free_port()
        self.username = username
        accepted = {}
        if password is not None:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            accepted[f"Basic {pair}"] = username
        if token is not None:
            accepted[f"Bearer {token}"] = "token"
        self._accepted = accepted
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED if client_cert else ssl.CERT_NONE
        self.requests = 0
        self.refused = 0
        self.handshake_failures = 0
        self.seen_auth: list[str | None] = []
        self._lock = threading.Lock()
        self._httpd: _TlsServer | None = None
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}"

    def note(self, authorization: str | None) -> str | None:
        """Count the request; the user it authenticates as, or None."""
        with self._lock:
            self.requests += 1
            self.seen_auth.append(authorization)
            user = self._accepted.get(authorization or "")
            if user is None:
                self.refused += 1
            return user

    def start(self) -> GitHttpServer:
        httpd = _TlsServer(("127.0.0.1", self.port), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()  # already listening: bound and listened in the constructor
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
