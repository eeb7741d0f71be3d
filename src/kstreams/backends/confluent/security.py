"""TLS, SASL and OAUTHBEARER settings of the confluent backend, as librdkafka properties.

Pure translation; confluent_kafka is imported only to probe for GSSAPI support.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import inspect
import json
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from kstreams.exceptions import ConfigError

BACKEND = "the confluent backend"

#: Lifetime given to librdkafka for an OAUTHBEARER token that is not a JWT:
#: its real expiry is unknown, so it is fetched again well before any
#: plausible one (librdkafka refreshes at 80% of it).
OPAQUE_TOKEN_LIFETIME_S = 60.0


def no_equivalent(name: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} has no equivalent in {BACKEND}: {why}")


def security_properties(
    options: Mapping[str, Any], extra: Mapping[str, Any]
) -> tuple[dict[str, Any], Any]:
    """The security.* / ssl.* / sasl.* properties, and the OAUTHBEARER token provider."""
    protocol = str(options.get("security_protocol", "PLAINTEXT")).upper()
    properties: dict[str, Any] = {"security.protocol": protocol.lower()}
    domain = options.get("sasl_kerberos_domain_name")
    if domain is not None:
        raise no_equivalent(
            "sasl_kerberos_domain_name",
            domain,
            "librdkafka always uses the broker's hostname for Kerberos",
        )
    context = options.get("ssl_context")
    if protocol.endswith("SSL") and context is not None:
        properties.update(_ssl_properties(context, extra))
    token_provider = None
    if protocol.startswith("SASL"):
        mechanism = str(options.get("sasl_mechanism", "PLAIN")).upper()
        properties["sasl.mechanism"] = mechanism
        if mechanism == "GSSAPI":
            if not gssapi_available():
                raise no_equivalent(
                    "sasl_mechanism",
                    "GSSAPI",
                    "this confluent-kafka build has no GSSAPI (Kerberos) provider",
                )
            properties["sasl.kerberos.service.name"] = options.get(
                "sasl_kerberos_service_name", "kafka"
            )
        elif mechanism == "OAUTHBEARER":
            token_provider = options.get("sasl_oauth_token_provider")
            if token_provider is None and "oauth_cb" not in extra:
                raise ConfigError("sasl_mechanism='OAUTHBEARER' needs sasl_oauth_token_provider")
        else:
            for name, key in (
                ("sasl_plain_username", "sasl.username"),
                ("sasl_plain_password", "sasl.password"),
            ):
                if options.get(name) is not None:
                    properties[key] = options[name]
    return properties, token_provider


def _ssl_properties(context: ssl.SSLContext, extra: Mapping[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "ssl.endpoint.identification.algorithm": "https" if context.check_hostname else "none",
    }
    if context.verify_mode == ssl.CERT_NONE:
        properties["enable.ssl.certificate.verification"] = False
        return properties
    # An SSLContext lets the CA certificates be read back, but never the
    # client certificate or key: mutual TLS needs ssl.certificate.location and
    # ssl.key.location (or the .pem forms) in extra_config.
    authorities = context.get_ca_certs(binary_form=True)
    if authorities:
        properties["ssl.ca.pem"] = "".join(ssl.DER_cert_to_PEM_cert(der) for der in authorities)
    elif not any(key.startswith("ssl.ca.") for key in extra):
        raise no_equivalent(
            "ssl_context",
            context,
            "it holds no CA certificates that can be read back (loaded from a capath?); "
            "pass ssl.ca.location in extra_config",
        )
    return properties


@functools.cache
def gssapi_available() -> bool:
    """Whether the installed librdkafka was built with a GSSAPI (Kerberos) provider."""
    import confluent_kafka

    try:
        confluent_kafka.Producer(
            {"security.protocol": "sasl_plaintext", "sasl.mechanism": "GSSAPI"}
        )
    except confluent_kafka.KafkaException:
        return False
    return True


def token_expiry(token: str, now: float) -> float:
    """When ``token`` expires, in seconds since the epoch: a JWT's ``exp`` claim,
    else ``now`` plus :data:`OPAQUE_TOKEN_LIFETIME_S`."""
    parts = token.split(".")
    if len(parts) == 3:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload))
        except ValueError:
            claims = None
        if isinstance(claims, dict) and isinstance(claims.get("exp"), (int, float)):
            return float(claims["exp"])
    return now + OPAQUE_TOKEN_LIFETIME_S


def oauth_callback(
    provider: Any, loop: asyncio.AbstractEventLoop, *, timeout_s: float
) -> Callable[[str], tuple[str, float, str, dict[str, str]]]:
    """An ``oauth_cb`` for confluent-kafka built from an aiokafka token provider.

    librdkafka calls it on one of its own threads; the provider's ``token()``
    coroutine runs on ``loop``, which must not be blocked meanwhile (build the
    client off the loop).
    """

    def oauth_cb(_config: str) -> tuple[str, float, str, dict[str, str]]:
        token = provider.token()
        if inspect.isawaitable(token):
            token = asyncio.run_coroutine_threadsafe(_awaited(token), loop).result(timeout_s)
        if not isinstance(token, str):
            raise TypeError(f"sasl_oauth_token_provider.token() returned {token!r}, not a str")
        extensions = provider.extensions() if hasattr(provider, "extensions") else {}
        return token, token_expiry(token, time.time()), "", dict(extensions or {})

    return oauth_cb


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
