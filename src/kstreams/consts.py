"""Constants under the module path kpn/kstreams users import them from:
content types for a ``content-type`` header, and ``StreamErrorPolicy``."""

from kstreams.policies import StreamErrorPolicy

APPLICATION_X_AVRO_BINARY = "application/x-avro-binary"
APPLICATION_X_AVRO_JSON = "application/x-avro-json"
APPLICATION_X_JSON_SCHEMA = "application/x-json-schema"
APPLICATION_JSON = "application/json"

#: The Avro content types.
AVRO_SERIALIZATION_TYPES = (APPLICATION_X_AVRO_BINARY, APPLICATION_X_AVRO_JSON)
#: Every content type above.
SERIALIZATION_TYPES = (*AVRO_SERIALIZATION_TYPES, APPLICATION_X_JSON_SCHEMA, APPLICATION_JSON)

__all__ = [
    "APPLICATION_JSON",
    "APPLICATION_X_AVRO_BINARY",
    "APPLICATION_X_AVRO_JSON",
    "APPLICATION_X_JSON_SCHEMA",
    "AVRO_SERIALIZATION_TYPES",
    "SERIALIZATION_TYPES",
    "StreamErrorPolicy",
]
