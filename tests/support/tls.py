"""Local HTTPS and bearer-protected HTTP servers on 127.0.0.1, with a CA made by `cryptography`.

`make_pki(dir)` writes a self-signed CA, a server certificate for 127.0.0.1 and a client
certificate, all signed by that CA. `FileServer` serves a dict of files over HTTP or HTTPS
(optionally requiring a client certificate, optionally a bearer token), records the
Authorization headers it saw, and is stopped by the test that started it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    usage: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0] if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage or []), False)
        if ExtendedKeyUsageOID.SERVER_AUTH in (usage or []):
            ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
            builder = builder.add_extension(x509.SubjectAlternativeName([ip]), False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def make_pki(root: Path) -> Pki:
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("hotswap test CA", ca_key, None)
    pki = Pki(
        *(root / n for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key"))
    )
    pki.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for who, cert_path, key_path, usage in (
        ("127.0.0.1", pki.server_cert, pki.server_key, ExtendedKeyUsageOID.SERVER_AUTH),
        ("device-7", pki.client_cert, pki.client_key, ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(who, key, (ca.subject, ca_key), [usage])
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
    return pki


class FileServer:
    """`files` over HTTP(S) on 127.0.0.1; `pki` makes it HTTPS, `client_ca` requires mTLS."""

    def __init__(
        self, files: dict[str, bytes], pki: Pki | None = None, token: str | None = None
    ) -> None:
        self.files, self.token = files, token
        self.seen_auth: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                server.seen_auth.append(self.headers.get("Authorization"))
                if token and self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="files"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if pki is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
            ctx.load_cert_chain(pki.server_cert, pki.server_key)
            ctx.verify_mode = ssl.CERT_REQUIRED
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if pki else "http"
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
