"""Throughput and overhead of kstreams against the raw clients and the peers, in one run.

    python3 dev.py bench               # the default run (about 12 minutes on 2 cores)
    python3 dev.py bench --quick       # a smoke run: 20,000 records, 1 repetition
    python3 dev.py bench --cases raw_aiokafka,ks_aiokafka --reps 5

Starts Tansu as the integration tier does (or uses ``$KSTREAMS_TEST_BOOTSTRAP``),
makes the peers' virtualenvs (``peer_envs.py``), pre-loads the records, then
runs every case in a fresh process (the peers' in their own interpreters), repetitions
interleaved (rep 1 of every case, then rep 2...) so that a drift in the
machine's speed hits every case alike. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import concurrency_cases
import machine
import peer_envs
from catalog import (
    BASELINE_CASES,
    BY_NAME,
    CASES,
    PEER_COLUMNS,
    PROFILE_CASES,
    RSS_CASES,
    RSS_REFERENCE,
)
from targets import targets

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CASES_PY = HERE / "cases.py"
PEER_CASES_PY = HERE / "peer_cases.py"
RESULTS_DIR = HERE / "results"
RESULTS_MD = HERE / "RESULTS.md"
PARTITIONS = 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, help="records pre-loaded (default 200,000)")
    parser.add_argument("--value-size", type=int, default=100, help="bytes per record")
    parser.add_argument("--reps", type=int, help="repetitions per case (default 3)")
    parser.add_argument("--quick", action="store_true", help="20,000 records, 1 repetition")
    parser.add_argument(
        "--produce-records", type=int, help="records per batched send case (default N/2)"
    )
    parser.add_argument(
        "--send-each-records", type=int, help="records for send awaited one by one (N/40)"
    )
    parser.add_argument("--chunk", type=int, default=1000, help="sends gathered at once")
    parser.add_argument("--rss-seconds", type=float, help="slow-handler run length (30 s)")
    parser.add_argument("--slowdown", type=float, default=100.0, help="slow handler factor")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument(
        "--baseline",
        help="a git ref: also run the typed no-op cases on its src/ (base_* cases), "
        "for the issue 13 bound concurrency=1 within 5%% of before",
    )
    parser.add_argument(
        "--conc-seconds",
        type=float,
        help="target window of each concurrency case at its ideal rate (default 2 s)",
    )
    parser.add_argument(
        "--confluent-extra",
        type=json.loads,
        default={},
        help="librdkafka properties for the kstreams confluent backend, as JSON, e.g. "
        "'{\"queued.max.messages.kbytes\": 4096}' (to try a setting out)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the cProfile runs")
    parser.add_argument("--top", type=int, default=12, help="functions listed per profile")
    parser.add_argument("--bootstrap", help="an existing broker (else $KSTREAMS_TEST_BOOTSTRAP)")
    parser.add_argument(
        "--max-load",
        type=float,
        default=0.7,
        help="wait until the 1-minute load average is below this before measuring",
    )
    parser.add_argument("--load-wait", type=float, default=300.0, help="longest wait (s)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    parser.add_argument(
        "--markdown",
        type=Path,
        help="where to write the markdown table (default: benchmarks/RESULTS.md, "
        "only for a full default run)",
    )
    args = parser.parse_args(argv)
    args.records = args.records or (20_000 if args.quick else 200_000)
    args.reps = args.reps or (1 if args.quick else 3)
    args.produce_records = args.produce_records or max(1000, args.records // 2)
    args.send_each_records = args.send_each_records or max(500, args.records // 40)
    args.rss_seconds = args.rss_seconds or (6.0 if args.quick else 30.0)
    args.conc_seconds = args.conc_seconds or (0.5 if args.quick else 2.0)
    if args.cases:
        names = [name.strip() for name in args.cases.split(",") if name.strip()]
        unknown = [name for name in names if name not in BY_NAME]
        if unknown:
            parser.error(f"unknown cases {unknown}; choose from {sorted(BY_NAME)}")
        args.selected = names
    else:
        args.selected = [case.name for case in [*CASES, *RSS_CASES]]
        if args.baseline:
            at = args.selected.index("lag_confluent")
            args.selected[at:at] = [case.name for case in BASELINE_CASES]
        if not args.no_profile:
            args.selected += [case.name for case in PROFILE_CASES]
    full = not (
        args.cases
        or args.quick
        or args.records != 200_000
        or args.conc_seconds != 2.0
        or args.no_profile
        or args.confluent_extra
    )
    args.markdown = args.markdown or (RESULTS_MD if full else None)
    return args


# -- the broker and the data -------------------------------------------------------


@contextlib.contextmanager
def broker(args: argparse.Namespace) -> Iterator[str]:
    external = args.bootstrap or os.environ.get("KSTREAMS_TEST_BOOTSTRAP")
    if external:
        yield external
        return
    sys.path.insert(0, str(ROOT))
    from tests.broker import tansu_broker

    with tansu_broker() as bootstrap:
        yield bootstrap


async def preload(
    bootstrap: str, topic: str, produce_topic: str, n: int, size: int, keyed: tuple[str, int]
) -> float:
    """Create the topics and write ``n`` records round-robin over the partitions, and
    the keyed topic of the concurrency cases (``keyed[1]`` records, 60 keys)."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, PARTITIONS, 1) for name in (topic, produce_topic, keyed[0])]
        )
    finally:
        await admin.close()
    started = time.perf_counter()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=1_000_000)
    await producer.start()
    try:
        value = b"x" * size
        deliveries = [await producer.send(topic, value, partition=i % PARTITIONS) for i in range(n)]
        for key, partition in concurrency_cases.keyed_records(keyed[1]):
            deliveries.append(await producer.send(keyed[0], value, key, partition=partition))
        await asyncio.gather(*deliveries)
    finally:
        await producer.stop()
    return time.perf_counter() - started


# -- running cases -------------------------------------------------------------------


def run_case(name: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter (the project's, or its peer's virtualenv);
    its result, ``{"na": why}`` for a case that does not apply, or ``{"error": ...}``."""
    env = BY_NAME[name].env
    environ = None
    if env == "project":
        command = [sys.executable, str(CASES_PY), name, json.dumps(params)]
    elif env == "baseline":
        # The same case on the baseline's sources, ahead of the editable install.
        command = [sys.executable, str(CASES_PY), name[len("base_") :], json.dumps(params)]
        environ = {**os.environ, "PYTHONPATH": str(peer_envs.BASELINE_DIR / "src")}
    else:
        command = [str(peer_envs.python_of(env)), str(PEER_CASES_PY), name, json.dumps(params)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=ROOT,
            check=False,
            env=environ,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f}s"}
    wall = time.perf_counter() - started
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            result["wall_s"] = wall
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


def summarize(runs: list[dict[str, Any]], key: str = "rate") -> dict[str, Any]:
    values = [run[key] for run in runs if key in run and "error" not in run and "na" not in run]
    if not values:
        return {}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    print(f"kstreams benchmarks: {args.records:,} records x {args.value_size} B, {args.reps} reps")
    if args.no_wait:
        load_before, waited = os.getloadavg()[0], 0.0
    else:
        load_before, waited = machine.wait_for_quiet(args.max_load, args.load_wait)
    print(f"  1-minute load at start: {load_before:.2f} (waited {waited:.0f} s)")
    RESULTS_DIR.mkdir(exist_ok=True)
    peers = peer_envs.prepare(
        {BY_NAME[name].env for name in args.selected}, RESULTS_DIR / "venvs.log"
    )
    baseline = None
    if any(BY_NAME[name].env == "baseline" for name in args.selected):
        baseline = peer_envs.prepare_baseline(args.baseline or "HEAD")
        print(f"  baseline: src/ of {baseline} in {peer_envs.BASELINE_DIR.relative_to(ROOT)}")
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    produce_topic = f"{topic}-produce"
    keyed = (f"{topic}-keyed", concurrency_cases.records_for("key", 64, args.conc_seconds))
    base = {
        "topic": topic,
        "produce_topic": produce_topic,
        "keyed_topic": keyed[0],
        "keyed_records": keyed[1],
        "conc_seconds": args.conc_seconds,
        "records": args.records,
        "value_size": args.value_size,
        "produce_records": args.produce_records,
        "send_each_records": args.send_each_records,
        "chunk": args.chunk,
        "top": args.top,
        "confluent_extra": args.confluent_extra,
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.selected}
    started = time.perf_counter()
    with broker(args) as bootstrap, machine.LoadSampler() as load:
        base["bootstrap"] = bootstrap
        print(f"  broker {bootstrap}; pre-loading {args.records:,} records...", flush=True)
        load_s = asyncio.run(
            preload(bootstrap, topic, produce_topic, args.records, args.value_size, keyed)
        )
        print(f"  pre-loaded in {load_s:.1f} s")
        plain = [name for name in args.selected if BY_NAME[name].section not in ("rss", "profile")]
        for rep in range(args.reps):
            for name in plain:
                params = {**base, "group": f"{name}-{rep}-{uuid.uuid4().hex[:6]}"}
                error = peers.get(BY_NAME[name].env, {}).get("error")
                result = {"error": error} if error else run_case(name, params, timeout_s=180)
                runs[name].append(result)
                print(f"  rep {rep + 1} {name:<28} {_brief(result)}", flush=True)
        for name in args.selected:
            section = BY_NAME[name].section
            if section not in ("rss", "profile"):
                continue
            params = {**base, "group": f"{name}-{uuid.uuid4().hex[:6]}"}
            timeout = 240.0
            if section == "rss":
                params.update(rss_params(name, runs, args))
                timeout = args.rss_seconds + 120
            result = run_case(name, params, timeout_s=timeout)
            runs[name].append(result)
            print(f"  {name:<34} {_brief(result)}", flush=True)
    total_s = time.perf_counter() - started
    load_after = os.getloadavg()[0]
    report = build_report(args, runs, load_before, load_after, load_s, total_s)
    report["load"]["during"] = load.summary()
    report["peers"] = peers
    report["baseline"] = baseline
    (RESULTS_DIR / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    from report import headline, markdown, summary, text_table

    print()
    print(text_table(report))
    if args.markdown:
        args.markdown.write_text(markdown(report))
        print(f"\nwrote {args.markdown}")
    if args.markdown == RESULTS_MD:
        for page, text in ((README_MD, headline(report)), (DOCS_MD, summary(report))):
            if splice(page, text):
                print(f"updated the results in {page.relative_to(ROOT)}")
    print(f"wrote {(RESULTS_DIR / 'latest.json').relative_to(ROOT)}; total {total_s:.0f} s")
    return 0


BEGIN, END = "<!-- benchmark results: begin -->", "<!-- benchmark results: end -->"
#: Pages whose results block a full default run rewrites.
README_MD, DOCS_MD = ROOT / "README.md", ROOT / "docs" / "benchmarks.md"


def splice(page: Path, text: str) -> bool:
    """Replace what lies between the two markers of ``page``; False if it has none."""
    if not page.exists():
        return False
    content = page.read_text()
    start, end = content.find(BEGIN), content.find(END)
    if start < 0 or end < start:
        return False
    page.write_text(content[: start + len(BEGIN)] + "\n" + text + content[end:])
    return True


def rss_params(name: str, runs: dict[str, list[dict[str, Any]]], args: Any) -> dict[str, Any]:
    """The slow handler's cost per record: ``slowdown`` times the stream's full-speed
    cost per record in this run, and never so cheap that the records run out early."""
    reference = summarize(runs.get(RSS_REFERENCE[name.removeprefix("base_")], [])).get("median")
    handler_s = args.slowdown / reference if reference else 200e-6
    # Leave a tenth of the records unread at the end of the run.
    handler_s = max(handler_s, args.rss_seconds / (0.9 * args.records))
    return {"handler_s": handler_s, "duration_s": args.rss_seconds}


def _brief(result: dict[str, Any]) -> str:
    if "na" in result:
        return "n/a: " + result["na"]
    if "error" in result:
        return "ERROR " + result["error"][:200]
    text = f"{result['rate']:>12,.0f} rec/s"
    if result.get("join_s"):
        text += f"  join {result['join_s']:.2f} s"
    if "lag" in result:
        lag = result["lag"]
        text += f"  lag p50 {lag.get('p50_ms', 0):.2f} p99 {lag.get('p99_ms', 0):.2f} ms"
    if result.get("dropped"):
        text += f"  ({result['dropped']:,} of {result['asked']:,} records DROPPED)"
    if "most_in_flight" in result:
        text += f"  {result['of_n_x_200']:.2f}x N*200, at most {result['most_in_flight']} in flight"
        text += " (partial)" if result.get("partial") else ""
    if "growth_pct" in result:
        text += f"  RSS {result['q1_kb'] / 1024:.0f}->{result['q4_kb'] / 1024:.0f} MiB"
        text += f" ({result['growth_pct']:+.1f}%)"
    return text


def build_report(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    load_before: float,
    load_after: float,
    load_s: float,
    total_s: float,
) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for name, results in runs.items():
        case = BY_NAME[name]
        entry: dict[str, Any] = {
            "label": case.label,
            "section": case.section,
            "baseline": case.baseline,
            "runs": results,
            "rate": summarize(results),
            "join_s": summarize(results, "join_s"),
            "errors": [run["error"] for run in results if "error" in run],
            "na": next((run["na"] for run in results if "na" in run), None),
        }
        if case.baseline and entry["rate"] and runs.get(case.baseline):
            base = summarize(runs[case.baseline])
            if base:
                entry["ratio"] = entry["rate"]["median"] / base["median"]
        entry["peer_ratios"] = {}
        for column, peer in PEER_COLUMNS.get(case.section, []):
            base = summarize(runs.get(peer, []))
            if entry["rate"] and base:
                entry["peer_ratios"][column] = entry["rate"]["median"] / base["median"]
        if case.section == "lag":
            for key in ("p50_ms", "p99_ms", "max_ms"):
                entry[key] = summarize([run["lag"] for run in results if "lag" in run], key)
            entry["idle_p99_ms"] = summarize(
                [run["idle_lag"] for run in results if "idle_lag" in run], "p99_ms"
            )
        cases[name] = entry
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine.describe(),
        "load": {"before": load_before, "after": load_after},
        "params": {
            "records": args.records,
            "value_size": args.value_size,
            "partitions": PARTITIONS,
            "reps": args.reps,
            "produce_records": args.produce_records,
            "send_each_records": args.send_each_records,
            "chunk": args.chunk,
            "rss_seconds": args.rss_seconds,
            "conc_seconds": args.conc_seconds,
            "slowdown": args.slowdown,
            "confluent_extra": args.confluent_extra,
            "argv": sys.argv[1:],
        },
        "preload_s": load_s,
        "total_s": total_s,
        "cases": cases,
        "targets": targets(cases),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
