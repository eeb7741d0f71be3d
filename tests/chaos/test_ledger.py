"""The chaos tier's counting: lost and duplicated records from the members' ledgers."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.harness import Tally, keys, read_ledger, render_markdown


def test_tally_counts_lost_keys_and_repeated_offsets_across_ledgers(tmp_path: Path) -> None:
    """A key in no ledger is lost; an offset in two ledgers, or twice in one, is duplicated."""
    first, second = tmp_path / "a.ledger", tmp_path / "b.ledger"
    first.write_text("t 0 0 k0000000\nt 0 1 k0000001\nt 1 0 k0000002\n")
    second.write_text("t 0 1 k0000001\nt 0 1 k0000001\nother 0 0 k0000003\n")
    tally = Tally.of([first, second], "t", keys(0, 4))
    assert (tally.records, tally.handled, tally.lost, tally.duplicated) == (4, 5, 1, 2)
    assert tally.lost_keys == ["k0000003"]


def test_a_line_torn_by_sigkill_is_not_counted(tmp_path: Path) -> None:
    """A last line cut short by SIGKILL (no key yet) is skipped, not misread."""
    ledger = tmp_path / "m.ledger"
    ledger.write_text("t 0 0 k0000000\nt 0 1")
    assert read_ledger(ledger) == [("t", 0, 0, "k0000000")]


def test_results_render_one_row_per_scenario_and_backend() -> None:
    """RESULTS.md has a row per scenario and backend, with '-' for no stop time."""
    row = {
        "scenario": "SIGKILL x20",
        "backend": "aiokafka",
        "runs": 20,
        "records": 20000,
        "lost": 0,
        "duplicated": 3222,
        "max_stop_s": None,
        "duration_s": 95.2,
        "notes": "",
    }
    text = render_markdown({"SIGKILL x20/aiokafka": row})
    assert "| SIGKILL x20 | aiokafka | 20 | 20,000 | 0 | 3,222 | - | 95 |" in text
