"""Fixtures of the kpn/kstreams compatibility suite."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

PASSWORD = "s3cret"


@dataclass(frozen=True)
class Certs:
    """The PEM files the `certs` fixture made."""

    ca_crt: Path
    server_crt: Path
    server_key: Path
    client_crt: Path
    client_key: Path
    client_key_encrypted: Path


def _openssl(directory: Path, command: str) -> None:
    subprocess.run(
        ["openssl", *command.split()], cwd=directory, check=True, capture_output=True, timeout=30
    )


def _leaf(directory: Path, name: str, usage: str) -> None:
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectKeyIdentifier=hash\n"
    )
    _openssl(directory, f"ecparam -name prime256v1 -genkey -noout -out {name}.key")
    _openssl(directory, f"req -new -key {name}.key -subj /CN={name} -out {name}.csr")
    _openssl(
        directory,
        f"x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
        f"-extfile {extensions.name} -out {name}.crt",
    )


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A CA with a localhost server certificate and a client certificate it signed."""
    if shutil.which("openssl") is None:
        pytest.fail("these tests need the openssl command line tool")
    directory = tmp_path_factory.mktemp("certs")
    _openssl(directory, "ecparam -name prime256v1 -genkey -noout -out ca.key")
    _openssl(
        directory,
        "req -x509 -new -key ca.key -subj /CN=kstreams-test-ca -days 2 "
        "-addext basicConstraints=critical,CA:TRUE "
        "-addext keyUsage=critical,keyCertSign,cRLSign -out ca.crt",
    )
    _leaf(directory, "server", "serverAuth")
    _leaf(directory, "client", "clientAuth")
    _openssl(
        directory,
        f"pkey -in client.key -aes256 -passout pass:{PASSWORD} -out client-encrypted.key",
    )
    return Certs(
        ca_crt=directory / "ca.crt",
        server_crt=directory / "server.crt",
        server_key=directory / "server.key",
        client_crt=directory / "client.crt",
        client_key=directory / "client.key",
        client_key_encrypted=directory / "client-encrypted.key",
    )
