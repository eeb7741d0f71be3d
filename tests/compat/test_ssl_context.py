"""kstreams.utils SSL contexts, from files and from PEM text, proven by real TLS handshakes
with the certificates of the ``certs`` fixture."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from kstreams import create_engine, utils
from kstreams.backends.kafka import Kafka, SecurityProtocol
from kstreams.exceptions import ConfigError
from tests.compat.conftest import PASSWORD, Certs


async def handshake(certs: Certs, client_context: ssl.SSLContext) -> str:
    """Connect to a loopback TLS server that requires a client certificate signed by the
    CA; return the common name of the client certificate the server saw."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca_crt)
    server_context.load_cert_chain(certs.server_crt, certs.server_key)
    server_context.verify_mode = ssl.CERT_REQUIRED
    seen: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert")
        subject = dict(item[0] for item in peer["subject"])
        seen.append(subject["commonName"])
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=client_context, server_hostname="localhost"
            ),
            10,
        )
        assert await asyncio.wait_for(reader.read(2), 10) == b"ok"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
    return seen[0]


async def test_context_from_files_verifies_the_server_and_presents_the_client(certs: Certs) -> None:
    """create_ssl_context(cafile, certfile, keyfile) completes a mutual-TLS handshake."""
    context = utils.create_ssl_context(
        cafile=str(certs.ca_crt), certfile=str(certs.client_crt), keyfile=str(certs.client_key)
    )
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert await handshake(certs, context) == "client"


async def test_context_from_files_with_a_password_protected_key(certs: Certs) -> None:
    """A password-protected key loads with `password=`, and fails clearly without it."""
    context = utils.create_ssl_context(
        cadata=certs.ca_crt.read_text(),
        certfile=str(certs.client_crt),
        keyfile=str(certs.client_key_encrypted),
        password=PASSWORD,
    )
    assert await handshake(certs, context) == "client"
    with pytest.raises(ConfigError, match="certfile/keyfile"):
        utils.create_ssl_context(
            cafile=str(certs.ca_crt),
            certfile=str(certs.client_crt),
            keyfile=str(certs.client_key_encrypted),
            password="wrong",
        )


async def test_context_from_memory_completes_the_handshake(certs: Certs) -> None:
    """create_ssl_context_from_mem with PEM strings, as read from environment variables."""
    context = utils.create_ssl_context_from_mem(
        certdata=certs.client_crt.read_text(),
        keydata=certs.client_key_encrypted.read_text(),
        password=PASSWORD,
        cadata=certs.ca_crt.read_text(),
    )
    assert await handshake(certs, context) == "client"


async def test_a_context_without_the_ca_rejects_the_server(certs: Certs) -> None:
    """Without the CA, the server's certificate is not trusted: the context does verify."""
    context = utils.create_ssl_context_from_mem(
        certdata=certs.client_crt.read_text(), keydata=certs.client_key.read_text()
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(certs, context)


def test_bad_pem_text_is_a_config_error_naming_the_argument(certs: Certs) -> None:
    """PEM text that is not a certificate or key raises ConfigError naming what was bad."""
    with pytest.raises(ConfigError, match="certdata/keydata"):
        utils.create_ssl_context_from_mem(certdata="not a certificate", keydata="nor a key")
    with pytest.raises(ConfigError, match="cadata"):
        utils.create_ssl_context_from_mem(
            certdata=certs.client_crt.read_text(),
            keydata=certs.client_key.read_text(),
            cadata="not a CA",
        )
    with pytest.raises(ConfigError, match="cafile"):
        utils.create_ssl_context(cafile=str(certs.ca_crt.parent / "missing.crt"))


def test_the_backend_takes_the_context(certs: Certs) -> None:
    """kpn's SSL backend example: Kafka(security_protocol="SSL", ssl_context=...) in an engine."""
    context = utils.create_ssl_context(cafile=str(certs.ca_crt))
    for protocol in ("SSL", SecurityProtocol.SSL):
        backend = Kafka(
            bootstrap_servers=["localhost:9094"], security_protocol=protocol, ssl_context=context
        )
        engine = create_engine(title="my-stream-engine", backend=backend)
        assert engine.backend.client_options()["ssl_context"] is context
        assert engine.backend.client_options()["security_protocol"] == "SSL"
