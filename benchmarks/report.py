"""The tables ``run.py`` prints and writes to ``RESULTS.md``, from its JSON report."""

from __future__ import annotations

from typing import Any

import concurrency_cases as conc
from catalog import PEER_COLUMNS

SECTIONS = {
    "consume": "Consuming (first record to N-th; group join excluded)",
    "memory": "Memory backend",
    "produce": "Producing",
    "eos": "Exactly-once copy vs at-least-once copy (noida-db, first record to N-th)",
}


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _span(summary: dict[str, Any]) -> str:
    if not summary:
        return "-"
    low, high = summary["min"], summary["max"]
    return f"{low:,.0f}-{high:,.0f}" if low != high else f"{low:,.0f}"


def _rows(report: dict[str, Any], section: str) -> list[list[str]]:
    rows = []
    for name, entry in report["cases"].items():
        if entry["section"] != section:
            continue
        rate = entry["rate"]
        ratio = entry.get("ratio")
        join = entry["join_s"].get("median") if entry["join_s"] else None
        records = _records(report, name, entry)
        errors = f" ({len(entry['errors'])} failed)" if entry["errors"] else ""
        peers = entry.get("peer_ratios", {})
        rows.append(
            [
                entry["label"] + errors,
                f"`{name}`",
                records,
                _rate(rate.get("median")) if rate else _why_missing(entry),
                _span(rate),
                "1.00 (base)"
                if not entry["baseline"] and section != "memory"
                else (f"{ratio:.2f}" if ratio is not None else "-"),
                *(_x(peers.get(column)) for column, _ in PEER_COLUMNS.get(section, [])),
                f"{join:.2f}" if join else "-",
            ]
        )
    return rows


def _x(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:.0f}"


def _why_missing(entry: dict[str, Any]) -> str:
    if entry.get("na"):
        return "n/a: " + entry["na"]
    if entry["errors"]:
        return "ERROR: " + entry["errors"][0][:80]
    return "-"


def _header(section: str) -> list[str]:
    peers = [column for column, _ in PEER_COLUMNS.get(section, [])]
    return [*HEADER[:-1], *peers, HEADER[-1]]


def _conc_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per backend and ordering; per N, records/s and its ratio to N x 200."""
    cases = report["cases"]
    rows = []
    for backend in conc.BACKENDS:
        for ordering in conc.ORDERINGS:
            names = [conc.case_name(backend, ordering, n) for n in conc.CONCURRENCIES]
            if not any(name in cases for name in names):
                continue
            cells = [backend, ordering]
            for n, name in zip(conc.CONCURRENCIES, names, strict=True):
                entry = cases.get(name)
                median = entry["rate"].get("median") if entry and entry["rate"] else None
                if median is None:
                    cells.append(_why_missing(entry) if entry else "-")
                    continue
                most = max(
                    (run.get("most_in_flight", 0) for run in entry["runs"] if "rate" in run),
                    default=0,
                )
                cells.append(f"{median:,.0f} ({median / (n / conc.SLEEP_S):.2f}x; {most})")
            rows.append(cells)
    return rows


def _declared(report: dict[str, Any]) -> str:
    ways = sorted(
        {
            run["declared_with"]
            for entry in report["cases"].values()
            if entry["section"] == "concurrency"
            for run in entry["runs"]
            if "declared_with" in run
        }
    )
    if ways == ["Stream(...) + engine.add_stream"]:
        return (
            " The streams were declared as `Stream(topic, func=..., concurrency=N, "
            "ordering=...)` + `engine.add_stream`: `engine.stream` of this build does not "
            "pass `concurrency=` on."
        )
    return f" Declared with {', '.join(f'`{way}`' for way in ways)}." if ways else ""


CONC_HEADER = [
    "backend",
    "ordering",
    *(f"N={n} rec/s (x N*200; most in flight)" for n in conc.CONCURRENCIES),
]


def _records(report: dict[str, Any], name: str, entry: dict[str, Any]) -> str:
    runs = [run for run in entry["runs"] if "records" in run]
    if not runs:
        return "-"
    if runs[0].get("dropped"):
        return f"{runs[0]['records']:,} of {runs[0]['asked']:,} sent (rest dropped)"
    return f"{runs[0]['records']:,}"


HEADER = ["case", "id", "records", "records/s (median)", "min-max", "x raw", "join s"]


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return lines


def _lag_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, entry in report["cases"].items():
        if entry["section"] != "lag":
            continue
        samples = [run["lag"].get("samples", 0) for run in entry["runs"] if "lag" in run]
        cells = [entry["label"], f"`{name}`", _rate(entry["rate"].get("median"))]
        for key in ("p50_ms", "p99_ms", "max_ms"):
            summary = entry.get(key) or {}
            cells.append(
                f"{summary['median']:.2f} ({summary['min']:.2f}-{summary['max']:.2f})"
                if summary
                else "-"
            )
        idle = entry.get("idle_p99_ms") or {}
        cells.append(f"{idle['median']:.2f}" if idle else "-")
        cells.append(", ".join(str(s) for s in samples))
        rows.append(cells)
    return rows


LAG_HEADER = [
    "case",
    "id",
    "records/s",
    "lag p50 ms",
    "lag p99 ms",
    "lag max ms",
    "idle p99 ms",
    "ticks per rep",
]


def _rss_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, entry in report["cases"].items():
        if entry["section"] != "rss":
            continue
        for run in entry["runs"]:
            if "error" in run:
                rows.append([entry["label"], f"`{name}`", "ERROR: " + run["error"][:80]])
                continue
            curve = run["rss_kb"]
            step = max(1, len(curve) // 8)
            shown = " ".join(f"{kb / 1024:.0f}" for kb in curve[::step])
            rows.append(
                [
                    entry["label"],
                    f"`{name}`",
                    f"{run['handler_us']:.0f}",
                    f"{run['rate']:,.0f}",
                    f"{run['seconds']:.0f}",
                    f"{run['q1_kb'] / 1024:.1f}",
                    f"{run['q4_kb'] / 1024:.1f}",
                    f"{run['growth_pct']:+.1f}%",
                    f"{run.get('vmhwm_q1_kb', 0) / 1024:.1f} -> {run['vmhwm_kb'] / 1024:.1f}",
                    str(run.get("buffered_at_end")),
                    shown,
                ]
            )
    return rows


RSS_HEADER = [
    "case",
    "id",
    "handler us/rec",
    "handled rec/s",
    "s",
    "RSS Q1 MiB",
    "RSS Q4 MiB",
    "Q1->Q4",
    "peak MiB at Q1 -> end",
    "buffered at end",
    "RSS curve MiB (sampled)",
]


CONC_TITLE = "Ordered concurrency (issue 13)"


def _target_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for target in report["targets"]:
        value = target["value"]
        unit = target.get("unit", "")
        if value is None:
            shown = f"n/a: {target['note']}" if target.get("note") else "-"
        elif unit == "rec/s":
            shown = f"{value:,.0f} rec/s"
        elif unit == "x":
            shown = f"{value:.2f}x"
        else:
            shown = f"{value:.2f} {unit}"
        margin = "-" if value is None else f"{target['margin_pct']:+.0f}%"
        rows.append(
            [str(target.get("issue", "")), target["target"], shown, target["verdict"], margin]
        )
    return rows


TARGET_HEADER = ["issue", "target", "measured", "verdict", "margin vs bound"]


MICRO_TITLE = "Per-record cost of pieces of the path (no broker, no profiler, best of 5)"


def _profile_lines(report: dict[str, Any], md: bool, only_micro: bool = False) -> list[str]:
    lines: list[str] = []
    for name, entry in report["cases"].items():
        if entry["section"] != "profile":
            continue
        for run in entry["runs"]:
            if "error" in run:
                lines.append(f"{name}: ERROR {run['error'][:200]}")
                continue
            if "costs_us" in run:
                lines += [f"#### {MICRO_TITLE}", ""] if md else [MICRO_TITLE]
                rows = [
                    [piece, f"{cost:.3f}" if isinstance(cost, float) else cost]
                    for piece, cost in run["costs_us"].items()
                ]
                header = ["piece", "us/record"]
                lines += _md_table(header, rows) if md else _text_table(header, rows)
                lines.append("")
            for part in () if only_micro else ("main", "worker", "poller"):
                if part not in run:
                    continue
                title = f"{entry['label']} ({name}), {part} thread, under cProfile: "
                title += f"{run['rate']:,.0f} rec/s"
                lines.append(f"#### {title}" if md else title)
                if md:
                    lines.append("")
                header = ["function", "calls/rec", "own us/rec", "cum us/rec"]
                rows = [
                    [
                        f"`{row['function']}`" if md else row["function"],
                        f"{row['calls_per_record']:.3f}",
                        f"{row['tottime_us_per_record']:.3f}",
                        f"{row['cumtime_us_per_record']:.3f}",
                    ]
                    for row in run[part]
                ]
                lines += _md_table(header, rows) if md else _text_table(header, rows)
                lines.append("")
    return lines


def text_table(report: dict[str, Any]) -> str:
    lines: list[str] = []
    for section, title in SECTIONS.items():
        rows = _rows(report, section)
        if rows:
            lines += [title, *_text_table(_header(section), rows), ""]
    conc_rows = _conc_rows(report)
    if conc_rows:
        lines += [CONC_TITLE, *_text_table(CONC_HEADER, conc_rows), ""]
    lag = _lag_rows(report)
    if lag:
        lines += ["Event-loop lag (1 ms ticker)", *_text_table(LAG_HEADER, lag), ""]
    rss = _rss_rows(report)
    if rss:
        lines += ["Memory under a slow handler", *_text_table(RSS_HEADER, rss), ""]
    lines += _profile_lines(report, md=False)
    load = report["load"]
    lines += [
        f"1-minute load: {load['before']:.2f} at the start, {load['after']:.2f} at the end"
        + _during(load),
        "",
        "Targets",
        *_text_table(TARGET_HEADER, _target_rows(report)),
    ]
    return "\n".join(lines)


def _during(load: dict[str, Any]) -> str:
    during = load.get("during")
    if not during:
        return ""
    return (
        f", {during['min']:.2f}-{during['max']:.2f} during the run "
        f"(mean {during['mean']:.2f} of {during['samples']} samples, every 10 s)"
    )


def _peer_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, peer in report.get("peers", {}).items():
        shown = peer.get("error") or ", ".join(
            f"{dist} {version}" for dist, version in peer["versions"].items()
        )
        lines.append(f"- peer `{name}` ({peer['label']}), own virtualenv: {shown}")
    return lines


def _facts(report: dict[str, Any]) -> list[str]:
    m, p, load = report["machine"], report["params"], report["load"]
    return [
        f"- date: {report['date']}",
        f"- machine: {m['nproc']} CPUs, {m['cpu']}; {m['platform']}",
        f"- Python {m['python']}, aiokafka {m['aiokafka']}, confluent-kafka "
        f"{m['confluent_kafka']} (librdkafka {m['librdkafka']}), kstreams {m['kstreams_commit']}",
        f"- broker: Tansu on loopback, memory storage; {p['records']:,} records of "
        f"{p['value_size']} B over {p['partitions']} partitions; {p['reps']} repetitions per "
        "case, each in a fresh process",
        f"- 1-minute load average: {load['before']:.2f} at the start, {load['after']:.2f} "
        f"at the end{_during(load)} (the run's own broker and clients included); "
        f"total {report['total_s']:.0f} s",
        *_peer_lines(report),
        f"- producing: {p['produce_records']:,} records per batched case, "
        f"{p['send_each_records']:,} for `send` awaited one by one, gather chunks of "
        f"{p['chunk']:,}",
    ]


def _throughput(report: dict[str, Any], h: str) -> list[str]:
    """Targets, the throughput tables and the concurrency table, headings at ``h``."""
    p = report["params"]
    lines = [f"{h} Targets", "", *_md_table(TARGET_HEADER, _target_rows(report)), ""]
    for section, title in SECTIONS.items():
        rows = _rows(report, section)
        if rows:
            lines += [f"{h} {title}", "", *_md_table(_header(section), rows), ""]
    conc_rows = _conc_rows(report)
    if conc_rows:
        lines += [
            f"{h} {CONC_TITLE}",
            "",
            f"A handler sleeping {conc.SLEEP_S * 1000:.0f} ms per record, {conc.PARTITIONS} "
            f"partitions, {conc.KEYS} keys; about {p['conc_seconds']:.1f} s of records at the "
            "ideal rate per case. Each cell: median records/s, its ratio to N x 200 (the rate "
            "if all N slots were always busy; partition ordering is bounded by 3 x 200), and "
            "the most records seen in flight at once." + _declared(report),
            "",
            *_md_table(CONC_HEADER, conc_rows),
            "",
        ]
    return lines


def summary(report: dict[str, Any], h: str = "###") -> str:
    """The part of the results the README and docs/benchmarks.md show."""
    micro = [
        line
        for line in _profile_lines(report, md=True, only_micro=True)
        if not line.startswith("#### ")
    ]
    lines = [*_facts(report), "", *_throughput(report, h)]
    if micro:
        lines += [f"{h} {MICRO_TITLE}", "", *micro]
    return "\n".join(lines).rstrip() + "\n"


#: The rows of the README's headline tables.
HEADLINE = {
    "consume": [
        "raw_aiokafka",
        "ks_aiokafka",
        "ks_aiokafka_batch",
        "raw_confluent",
        "ks_confluent",
        "ks_confluent_batch",
        "aio_consume",
        "kpn_consume",
        "faststream_consume",
    ],
    "produce": [
        "raw_send_aiokafka",
        "send_concurrent_aiokafka",
        "send_many_aiokafka",
        "raw_send_confluent",
        "raw_send_confluent_reports",
        "send_many_confluent",
        "aio_send",
        "kpn_send_many",
    ],
    "eos": ["alo_copy_aiokafka", "eos_copy_aiokafka", "alo_copy_confluent", "eos_copy_confluent"],
}


def headline(report: dict[str, Any]) -> str:
    """The README's block: the machine, the verdicts, the main rows."""
    verdicts = [target["verdict"] for target in report["targets"]]
    missed = [t["target"] for t in report["targets"] if t["verdict"] == "MISS"]
    load = report["load"]
    lines = [
        f"{report['date']}, {report['machine']['nproc']} CPUs, 1-minute load "
        f"{load['before']:.2f} at the start{_during(load)}: "
        f"**{verdicts.count('PASS')} targets PASS, {verdicts.count('MISS')} MISS**, "
        f"{verdicts.count('n/a')} n/a"
        + (f" (missed: {'; '.join(missed)})" if missed else "")
        + ".",
        "",
    ]
    for section, names in HEADLINE.items():
        trimmed = {
            **report,
            "cases": {n: report["cases"][n] for n in names if n in report["cases"]},
        }
        rows = [row[:2] + row[3:4] + row[5:-1] for row in _rows(trimmed, section)]
        header = _header(section)
        if section == "eos":  # each exactly-once copy against the at-least-once one
            header = [h.replace("x raw", "x at-least-once") for h in header]
        if rows:
            lines += [*_md_table(header[:2] + header[3:4] + header[5:-1], rows), ""]
    conc_rows = _conc_rows(report)
    if conc_rows:
        lines += [*_md_table(CONC_HEADER, conc_rows), ""]
    return "\n".join(lines).rstrip() + "\n"


def markdown(report: dict[str, Any]) -> str:
    p = report["params"]
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python3 dev.py bench` (`benchmarks/run.py`); see `benchmarks/README.md`",
        "for what each case measures. Rerun with `python3 dev.py bench` or `nox -s bench`.",
        "",
        *_facts(report),
        "",
        *_throughput(report, "##"),
    ]
    lag = _lag_rows(report)
    if lag:
        lines += [
            "## Event-loop lag",
            "",
            "How late a coroutine sleeping 1 ms wakes up, while the stream consumes at full "
            "speed (median of the repetitions, min-max in brackets). *idle* is the same ticker "
            "before the first record.",
            "",
            *_md_table(LAG_HEADER, lag),
            "",
        ]
    rss = _rss_rows(report)
    if rss:
        lines += [
            "## Memory under a slow handler",
            "",
            f"The handler costs {p['slowdown']:.0f}x the stream's full-speed time per record "
            f"(or more, so the records last {p['rss_seconds']:.0f} s); RSS sampled every second "
            "from the first record. Q1/Q4: mean RSS of the first and last quarter of samples.",
            "",
            *_md_table(RSS_HEADER, rss),
            "",
        ]
    profile = _profile_lines(report, md=True)
    if profile:
        lines += [
            "## Where the time goes (cProfile, first record to N-th)",
            "",
            "Per record: calls, own time and cumulative time in microseconds, under the "
            "profiler (which slows Python calls down several times; compare rows, not "
            "absolute numbers).",
            "",
            *profile,
        ]
    return "\n".join(lines).rstrip() + "\n"
