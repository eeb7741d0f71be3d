"""SSL contexts for ``backends.Kafka(security_protocol="SSL", ssl_context=...)``.

Both functions verify the broker's certificate and host name (against the
given CA certificates, else the system's) and present the client
certificate if one is given. A file or PEM text that cannot be loaded
raises :class:`~kstreams.exceptions.ConfigError` naming the argument.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Callable
from typing import TypeVar

from kstreams.exceptions import ConfigError
from kstreams.types import encode_headers

_T = TypeVar("_T")


def _loading(what: str, load: Callable[[], _T]) -> _T:
    try:
        return load()
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"could not load {what}: {exc}") from exc


def create_ssl_context(
    *,
    cafile: str | None = None,
    capath: str | None = None,
    cadata: str | bytes | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    password: str | None = None,
) -> ssl.SSLContext:
    """A client SSL context from files.

    ``cafile`` (a PEM file), ``capath`` (a directory of them) and ``cadata``
    (PEM text, or DER bytes) are the CA certificates the broker's certificate
    must chain to. ``certfile`` is the client certificate (PEM, with any
    intermediate certificates), ``keyfile`` its private key when it is not in
    ``certfile``, ``password`` the key's password.
    """
    context = _loading(
        "cafile/capath/cadata",
        lambda: ssl.create_default_context(cafile=cafile, capath=capath, cadata=cadata),
    )
    if certfile is not None:
        _loading(
            "certfile/keyfile",
            lambda: context.load_cert_chain(certfile, keyfile=keyfile, password=password),
        )
    elif keyfile is not None:
        raise ConfigError("keyfile was given without certfile")
    return context


def create_ssl_context_from_mem(
    *,
    certdata: str,
    keydata: str,
    password: str | None = None,
    cadata: str | None = None,
) -> ssl.SSLContext:
    """A client SSL context from PEM text, as read from environment variables.

    ``certdata`` is the client certificate (with any intermediates), ``keydata``
    its private key, ``password`` the key's password, ``cadata`` the CA
    certificates the broker's certificate must chain to (system CAs if None).
    """
    context = _loading("cadata", lambda: ssl.create_default_context(cadata=cadata))
    # The ssl module loads a certificate chain from files only: write them
    # where only this user can read them, for the length of the call.
    with tempfile.TemporaryDirectory(prefix="kstreams-ssl-") as directory:
        cert_path = os.path.join(directory, "client.crt")
        key_path = os.path.join(directory, "client.key")
        for path, text in ((cert_path, certdata), (key_path, keydata)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(text)
        _loading(
            "certdata/keydata",
            lambda: context.load_cert_chain(cert_path, keyfile=key_path, password=password),
        )
    return context


__all__ = ["create_ssl_context", "create_ssl_context_from_mem", "encode_headers"]
