"""How a real client's ``start()`` waits for the cluster, the same on every backend.

It tries for at most :func:`start_timeout_s` (5 s, or ``request_timeout_ms``
if shorter), again every :data:`RETRY_EVERY_S`, logging each failed attempt
at WARNING, then raises one ``KafkaConnectionError`` that names the
bootstrap servers. Pure: no client is imported here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kstreams.exceptions import KafkaConnectionError

log = logging.getLogger("kstreams.backends")

#: Longest a ``start()`` waits for a first broker to answer.
START_TIMEOUT_S = 5.0
#: Pause between two attempts to reach the cluster.
RETRY_EVERY_S = 1.0


def start_timeout_s(request_timeout_s: float) -> float:
    return min(request_timeout_s, START_TIMEOUT_S)


def servers_text(bootstrap_servers: str | Sequence[str] | None) -> str:
    if bootstrap_servers is None:
        return "localhost:9092"
    if isinstance(bootstrap_servers, str):
        return bootstrap_servers
    return ",".join(bootstrap_servers)


def log_attempt(what: str, servers: str, attempt: int, waited_s: float, cause: object) -> None:
    log.warning(
        "%s: no broker reachable at %s yet (attempt %d, %.1f s): %s; retrying",
        what,
        servers,
        attempt,
        waited_s,
        cause,
    )


def unreachable(what: str, servers: str, waited_s: float, cause: object) -> KafkaConnectionError:
    return KafkaConnectionError(
        f"{what}: no broker reachable at bootstrap_servers={servers!r} within {waited_s:.1f} s "
        f"(last error: {cause})"
    )
