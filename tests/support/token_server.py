"""A registry token service for tests (the distribution "token" auth), on 127.0.0.1.

`TokenServer` answers `GET /token?service=...&scope=...` with a JWT (ES256, its certificate in
the `x5c` header) granting the asked scope, to a client that sends the right basic login; a
wrong or missing login gets 401. `OciRegistry(..., token=server)` configures the real registry
to trust the server's certificate (`auth.token.rootcertbundle`), so the registry answers 401
with `WWW-Authenticate: Bearer realm=...,service=...,scope=...` and accepts only these tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

SERVICE, ISSUER = "hotswap-test-registry", "hotswap-test-issuer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    def __init__(self, root: Path, user: str, password: str) -> None:
        self.user, self.password = user, password
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hotswap test token signer")])
        now = dt.datetime.now(dt.timezone.utc)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        root.mkdir(parents=True, exist_ok=True)
        self.cert_path = root / "token-signer.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.issued: list[str] = []  # the scopes tokens were issued for
        self.refused = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def token(self, scope: str) -> str:
        access = []
        if scope:
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            access = [{"type": kind, "name": repo, "actions": actions.split(",")}]
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER))
                          .decode()]}  # fmt: skip
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": self.user, "aud": SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": f"t{now}-{len(self.issued)}",
                  "access": access}  # fmt: skip
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.headers.get("Authorization") != expected:
                    server.refused += 1
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scope = parse_qs(urlparse(self.path).query).get("scope", [""])[0]
                server.issued.append(scope)
                body = json.dumps({"token": server.token(scope), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> TokenServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)

    def auth_config(self) -> str:
        """The registry config's `auth:` value for this server."""
        return (
            f"{{token: {{realm: '{self.url}/token', service: {SERVICE}, issuer: {ISSUER},"
            f" rootcertbundle: '{self.cert_path}'}}}}"
        )
