"""Every case of the run: its name, its label, its table, what it is divided by."""

from __future__ import annotations

from dataclasses import dataclass

import concurrency_cases
import eos_cases


@dataclass(frozen=True)
class Case:
    name: str
    label: str
    section: str
    #: The case of the same run this one's rate is divided by.
    baseline: str | None = None
    #: ``project`` (the project's interpreter, ``cases.py``) or a peer's virtualenv
    #: (``peer_cases.py`` run by that peer's interpreter).
    env: str = "project"


CONSUME = [
    Case("raw_aiokafka", "raw aiokafka getmany(500) loop", "consume"),
    Case("port_aiokafka", "aiokafka adapter alone, port getmany loop", "consume", "raw_aiokafka"),
    Case("ks_aiokafka", "kstreams aiokafka, typed no-op handler", "consume", "raw_aiokafka"),
    Case("ks_aiokafka_batch", "kstreams aiokafka, batch handler", "consume", "raw_aiokafka"),
    Case("raw_confluent", "raw confluent consume(500) thread", "consume"),
    Case(
        "port_confluent", "confluent adapter alone, port getmany loop", "consume", "raw_confluent"
    ),
    Case("ks_confluent", "kstreams confluent, typed no-op handler", "consume", "raw_confluent"),
    Case("ks_confluent_batch", "kstreams confluent, batch handler", "consume", "raw_confluent"),
]
PEER_CONSUME = [
    Case(
        "aio_consume",
        "peer: confluent_kafka.aio AIOConsumer.consume(500), awaited no-op per message",
        "consume",
        "raw_confluent",
        env="aio",
    ),
    Case(
        "kpn_consume",
        "peer: kpn/kstreams 0.34.6, typed no-op handler",
        "consume",
        "raw_aiokafka",
        env="kpn",
    ),
    Case(
        "faststream_consume",
        "peer: FastStream 0.7.8 aiokafka subscriber, logger off",
        "consume",
        "raw_aiokafka",
        env="faststream",
    ),
]
MEMORY = [
    Case(
        "memory_consume",
        "kstreams memory, consume only (typed no-op)",
        "memory",
        "memory_bare_loop",
    ),
    Case(
        "memory_bare_loop",
        "calibration: bare `for r in records: await handle(r)` over memory_consume's records",
        "memory",
    ),
    Case("memory_end_to_end", "kstreams memory, send N + handle N", "memory"),
]
PRODUCE = [
    Case("raw_send_aiokafka", "raw aiokafka send() + gather", "produce"),
    Case(
        "send_each_aiokafka",
        "kstreams aiokafka, engine.send awaited one by one",
        "produce",
        "raw_send_aiokafka",
    ),
    Case(
        "send_concurrent_aiokafka",
        "kstreams aiokafka, engine.send, gather chunks",
        "produce",
        "raw_send_aiokafka",
    ),
    Case(
        "send_many_aiokafka", "kstreams aiokafka, engine.send_many", "produce", "raw_send_aiokafka"
    ),
    Case(
        "raw_send_and_wait_aiokafka",
        "raw aiokafka send_and_wait(), gather chunks",
        "produce",
        "raw_send_aiokafka",
    ),
    Case(
        "raw_send_task_aiokafka",
        "raw aiokafka send() + a task per delivery, gather chunks",
        "produce",
        "raw_send_aiokafka",
    ),
    Case("raw_send_confluent", "raw confluent produce() + flush", "produce"),
    Case(
        "raw_send_confluent_reports",
        "raw confluent produce(on_delivery) + flush",
        "produce",
        "raw_send_confluent",
    ),
    Case(
        "send_each_confluent",
        "kstreams confluent, engine.send awaited one by one",
        "produce",
        "raw_send_confluent",
    ),
    Case(
        "send_concurrent_confluent",
        "kstreams confluent, engine.send, gather chunks",
        "produce",
        "raw_send_confluent",
    ),
    Case(
        "send_many_confluent",
        "kstreams confluent, engine.send_many",
        "produce",
        "raw_send_confluent",
    ),
    Case(
        "kpn_send_concurrent",
        "peer: kpn/kstreams 0.34.6, engine.send, gather chunks",
        "produce",
        "raw_send_aiokafka",
        env="kpn",
    ),
    Case(
        "kpn_send_many",
        "peer: kpn/kstreams 0.34.6, engine.send_many",
        "produce",
        "raw_send_aiokafka",
        env="kpn",
    ),
    Case(
        "aio_send",
        "peer: confluent_kafka.aio AIOProducer.produce() + flush, no headers",
        "produce",
        "raw_send_confluent",
        env="aio",
    ),
]
LAG = [
    Case("lag_confluent", "event-loop lag, confluent at full speed", "lag", "raw_confluent"),
    Case("lag_aiokafka", "event-loop lag, aiokafka at full speed", "lag", "raw_aiokafka"),
]
CONCURRENCY = [
    Case(name, "handler sleeping 5 ms, " + name, "concurrency") for name in concurrency_cases.NAMES
]
EOS = [
    Case(
        name,
        ("exactly-once" if name.startswith("eos") else "at-least-once")
        + f" copy, {name.rsplit('_', 1)[1]} (noida-db)",
        "eos",
        None if name.startswith("alo") else name.replace("eos_", "alo_"),
    )
    for name in eos_cases.NAMES
]
CASES = [*CONSUME, *PEER_CONSUME, *MEMORY, *PRODUCE, *LAG, *CONCURRENCY, *EOS]
#: With ``--baseline REF``: the typed no-op cases on REF's sources (``base_<case>``).
BASELINE_CASES = [
    Case(
        "base_ks_aiokafka",
        "baseline: kstreams aiokafka, typed no-op",
        "consume",
        "raw_aiokafka",
        env="baseline",
    ),
    Case(
        "base_ks_confluent",
        "baseline: kstreams confluent, typed no-op",
        "consume",
        "raw_confluent",
        env="baseline",
    ),
    Case(
        "base_memory_consume", "baseline: kstreams memory, consume only", "memory", env="baseline"
    ),
]
RSS_CASES = [
    Case("rss_aiokafka", "aiokafka, slow handler", "rss"),
    Case("rss_confluent", "confluent, slow handler", "rss"),
]
PROFILE_CASES = [
    Case("micro", "per-record pieces, no broker", "profile"),
    Case("profile_aiokafka", "aiokafka typed no-op", "profile"),
    Case("profile_confluent", "confluent typed no-op", "profile"),
    Case("profile_send_many_aiokafka", "aiokafka engine.send_many", "profile"),
    Case("profile_send_many_confluent", "confluent engine.send_many", "profile"),
]
BY_NAME = {case.name: case for case in [*CASES, *BASELINE_CASES, *RSS_CASES, *PROFILE_CASES]}
# For A/B runs with --cases: every project case can also run on --baseline's sources.
for _case in [*CASES, *RSS_CASES]:
    if _case.env == "project" and f"base_{_case.name}" not in BY_NAME:
        BY_NAME[f"base_{_case.name}"] = Case(
            f"base_{_case.name}",
            "baseline: " + _case.label,
            _case.section,
            _case.baseline,
            env="baseline",
        )
#: The full-speed case whose rate the slow handler of an RSS case is set from.
RSS_REFERENCE = {"rss_aiokafka": "ks_aiokafka", "rss_confluent": "ks_confluent"}
#: Per table, the peers every row is also divided by (column header, case).
PEER_COLUMNS = {
    "consume": [
        ("x aio", "aio_consume"),
        ("x kpn", "kpn_consume"),
        ("x FastStream", "faststream_consume"),
    ],
    "produce": [
        ("x AIOProducer", "aio_send"),
        ("x kpn send", "kpn_send_concurrent"),
        ("x kpn send_many", "kpn_send_many"),
    ],
}
