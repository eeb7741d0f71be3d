"""The targets of issues 12 and 13, judged on one run: value, bound, PASS or MISS."""

from __future__ import annotations

from typing import Any

import concurrency_cases as conc


def _rate(cases: dict[str, Any], name: str, key: str = "rate") -> float | None:
    entry = cases.get(name)
    return entry[key].get("median") if entry and entry.get(key) else None


def _ratio(cases: dict[str, Any], name: str, over: str) -> float | None:
    top, bottom = _rate(cases, name), _rate(cases, over)
    return top / bottom if top is not None and bottom else None


def targets(cases: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(
        name: str,
        value: float | None,
        bound: float,
        kind: str,
        unit: str,
        issue: int = 12,
        note: str | None = None,
    ) -> None:
        row: dict[str, Any] = {
            "target": name,
            "issue": issue,
            "value": value,
            "bound": bound,
            "unit": unit,
        }
        if value is None:
            out.append({**row, "verdict": "n/a", "note": note})
            return
        if kind == "at least":
            ok, margin = value >= bound, (value / bound - 1) * 100
        elif kind == "below":
            ok, margin = value < bound, (1 - value / bound) * 100
        else:  # "within": |value| <= bound
            ok, margin = abs(value) <= bound, (1 - abs(value) / bound) * 100
        # How far inside (+) or outside (-) the bound, relative to it.
        out.append({**row, "verdict": "PASS" if ok else "MISS", "margin_pct": margin})

    add(
        "aiokafka backend >= 0.8x raw getmany loop",
        _ratio(cases, "ks_aiokafka", "raw_aiokafka"),
        0.8,
        "at least",
        "x",
    )
    add(
        "confluent backend >= 1.0x confluent_kafka.aio",
        _ratio(cases, "ks_confluent", "aio_consume"),
        1.0,
        "at least",
        "x",
    )
    for backend in ("aiokafka", "confluent"):
        ks = f"ks_{backend}"
        add(
            f"{backend} backend >= 5x kpn/kstreams",
            _ratio(cases, ks, "kpn_consume"),
            5,
            "at least",
            "x",
        )
        add(
            f"{backend} backend >= 50x FastStream",
            _ratio(cases, ks, "faststream_consume"),
            50,
            "at least",
            "x",
        )
        add(
            f"{backend} batch handler >= 1.0x typed handler",
            _ratio(cases, f"{ks}_batch", ks),
            1.0,
            "at least",
            "x",
        )
    for backend in ("aiokafka", "confluent"):
        add(
            f"send_many >= 0.8x raw batched send ({backend})",
            _ratio(cases, f"send_many_{backend}", f"raw_send_{backend}"),
            0.8,
            "at least",
            "x",
        )
    add(
        "engine.send gathered >= 0.8x raw send() + gather (aiokafka)",
        _ratio(cases, "send_concurrent_aiokafka", "raw_send_aiokafka"),
        0.8,
        "at least",
        "x",
    )
    add(
        "memory typed no-op >= 4,000,000 rec/s",
        _rate(cases, "memory_consume"),
        4e6,
        "at least",
        "rec/s",
    )
    add(
        "event-loop lag p99 < 5 ms (confluent at full speed)",
        _rate(cases, "lag_confluent", "p99_ms"),
        5.0,
        "below",
        "ms",
    )
    for name in ("rss_aiokafka", "rss_confluent"):
        entry = cases.get(name)
        runs = [run for run in entry["runs"] if "growth_pct" in run] if entry else []
        growth = max((run["growth_pct"] for run in runs), key=abs, default=None)
        add(f"RSS flat (+-10%) Q1->Q4 ({name[4:]}, slow handler)", growth, 10.0, "within", "%")
    for name in ("ks_aiokafka", "ks_confluent", "memory_consume"):
        add(
            f"{name} (concurrency=1) >= 0.95x the same case on the baseline",
            _ratio(cases, name, f"base_{name}"),
            0.95,
            "at least",
            "x",
            issue=13,
            note=None if f"base_{name}" in cases else "no --baseline in this run",
        )
    for backend in conc.BACKENDS:
        for n in conc.CONCURRENCIES:
            if n > conc.TARGET_UP_TO:
                continue
            bound = conc.TARGET_FRACTION * n / conc.SLEEP_S
            name = conc.case_name(backend, "key", n)
            add(
                f"concurrency={n} ordering=key >= {bound:,.0f} rec/s ({backend})",
                _rate(cases, name),
                bound,
                "at least",
                "rec/s",
                issue=13,
                note=(cases.get(name) or {}).get("na"),
            )
    return out
