"""HTTPS served directly with --tls-certificate and --tls-key."""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from conftest import RunningServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TUS = {"Tus-Resumable": "1.0.0"}
OCTET = {"Content-Type": "application/offset+octet-stream"}
ServerFactory = Callable[..., RunningServer]
SERVE = [sys.executable, "-m", "tusd_py.cli", "serve", "--no-assets"]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by its own key; returns (certificate, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_upload_over_https(server_factory: ServerFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server = server_factory("--tls-certificate", str(cert), "--tls-key", str(key))
    origin = f"https://127.0.0.1:{server.port}"
    data = os.urandom(100_000)
    with httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), timeout=10) as client:
        created = client.post(origin + "/files/", headers={**TUS, "Upload-Length": str(len(data))})
        assert created.status_code == 201
        url = created.headers["Location"]
        assert url.startswith(f"https://127.0.0.1:{server.port}/files/")
        patched = client.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "0"}, content=data)
        assert patched.status_code == 204
        assert client.get(url).content == data
    # The certificate is checked: a client that does not trust it gets no answer.
    with pytest.raises(httpx.ConnectError):
        httpx.head(url, headers=TUS)


def test_certificate_without_key_is_refused(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    result = subprocess.run(
        [*SERVE, "--upload-dir", str(tmp_path / "d"), "--tls-certificate", str(cert)],
        capture_output=True,
        timeout=30,
        env={k: v for k, v in os.environ.items() if not k.startswith("TUSD_")},
    )
    assert result.returncode != 0
    assert b"--tls-certificate and --tls-key go together" in result.stderr
