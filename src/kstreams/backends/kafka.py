"""The Kafka settings under the module path kpn/kstreams users import them from.

``Kafka`` is :class:`kstreams.backends.Aiokafka`; its ``security_protocol``
and ``sasl_mechanism`` take these enums' members or their string values.
"""

from __future__ import annotations

import enum

from kstreams.backends.settings import Kafka


class SecurityProtocol(enum.StrEnum):
    """How the client talks to the brokers."""

    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(enum.StrEnum):
    """How the client authenticates with ``SASL_PLAINTEXT`` or ``SASL_SSL``."""

    PLAIN = "PLAIN"
    GSSAPI = "GSSAPI"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"
    OAUTHBEARER = "OAUTHBEARER"


__all__ = ["Kafka", "SaslMechanism", "SecurityProtocol"]
