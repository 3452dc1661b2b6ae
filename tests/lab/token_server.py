"""A minimal Docker registry v2 token server (Bearer auth) for the lab registry in ``token`` mode.

Run as a script (the registry fixture does this)::

    python token_server.py --key K.pem --cert C.pem --issuer I --service S \
        --port-file F [--user testuser:testpass ...]

It binds 127.0.0.1 on a free port and writes that port to ``--port-file``. Only ``GET /token``
is served (anything else is 404, so clients that try the OAuth2 POST fall back to GET). Query:
``service`` and ``scope=repository:NAME:ACTIONS`` (repeatable; one value may hold several
space-separated scopes). Basic credentials are optional: wrong ones get 401; anonymous callers
get ``pull`` only; known users get whatever they ask for. Tokens are RS256 JWTs with an ``x5c``
header holding the signing certificate, which is what distribution verifies against its
``rootcertbundle``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import datetime
import json
import os
import secrets
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

TOKEN_LIFETIME = 300


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_scopes(values: list[str]) -> list[dict[str, Any]]:
    """``repository:a/b:pull,push`` -> [{"type": "repository", "name": "a/b", "actions": [...]}]."""
    access: list[dict[str, Any]] = []
    for value in values:
        for scope in value.split():
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            actions = [a for a in parts[-1].split(",") if a]
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": actions})
    return access


class TokenSigner:
    """Signs RS256 JWTs with an ``x5c`` header."""

    def __init__(self, key_file: Path, cert_file: Path, issuer: str, service: str) -> None:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the token signing key must be RSA")
        self.key = key
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.issuer = issuer
        self.service = service

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)


class TokenHandler(BaseHTTPRequestHandler):
    """Serves ``GET /token``."""

    server: TokenServer
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _user(self) -> str | None:
        """'' for anonymous, the user name for good credentials, None for bad ones."""
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return ""
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if self.server.users.get(user) == password and user else None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/token":
            self._reply(404, {"details": "not found"})
            return
        user = self._user()
        if user is None:
            self._reply(401, {"details": "bad credentials"})
            return
        query = parse_qs(url.query)
        access = parse_scopes(query.get("scope", []))
        if not user:
            for item in access:
                item["actions"] = [a for a in item["actions"] if a == "pull"]
        token = self.server.signer.token(user, access)
        issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._reply(
            200,
            {
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME,
                "issued_at": issued,
            },
        )

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._reply(404, {"details": "use GET"})


class TokenServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, signer: TokenSigner, users: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), TokenHandler)
        self.signer = signer
        self.users = users


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--user", action="append", default=[], help="user:password")
    args = parser.parse_args(argv)
    users = dict(u.split(":", 1) for u in args.user)
    server = TokenServer(TokenSigner(args.key, args.cert, args.issuer, args.service), users)
    tmp = args.port_file.with_suffix(".tmp")
    tmp.write_text(f"{server.server_address[1]}\n")
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
