"""Tables that fit 120 columns (graph200k/text_table.py) in every table our CLIs print."""

from __future__ import annotations

import pytest

from annotators.cli import main as annotators_main
from annotators.cli import print_summary
from annotators.runner import AnnotatorRow, RunSummary
from graph200k.cli import main as graph200k_main
from graph200k.text_table import TABLE_WIDTH, format_table

LONG_WHY = ("weights of black-forest-labs/FLUX.1-Fill-dev are not in the Hugging Face cache (~/.cache/huggingface): "
            "LocalEntryNotFoundError")
LONG_HOW = ("python -m annotators download fill_edit (on a machine with network), or --model-dir DIR with the files in "
            "DIR/black-forest-labs/FLUX.1-Fill-dev/; accept the licence on the model's Hugging Face page first")


def _widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def test_a_narrow_table_is_laid_out_as_before():
    assert format_table(["a", "bb"], [["xxx", "y"], ["z", "w"]]).splitlines() == [
        "a    bb", "---  --", "xxx  y", "z    w"]


def test_a_wide_table_wraps_its_widest_column_and_keeps_every_word():
    words = [f"word{i}" for i in range(60)]
    text = format_table(["name", "long"], [["first", " ".join(words)], ["second", "short"]])
    assert _widest(text) <= TABLE_WIDTH
    assert len(text.splitlines()) > 4  # the long cell took several lines
    assert [w for w in text.split() if not w.startswith("-")] == ["name", "long", "first", *words, "second", "short"]


def test_details_go_under_their_row_wrapped_and_empty_ones_are_left_out():
    text = format_table(["annotator", "status"], [["fill_edit", "skipped"], ["canny", "ran"]],
                        details=[[("why", LONG_WHY), ("enable", LONG_HOW)], [("why", ""), ("enable", "")]])
    lines = text.splitlines()
    assert _widest(text) <= TABLE_WIDTH
    assert lines[2].startswith("fill_edit") and lines[3].startswith("    why: weights of")
    assert lines[-1].startswith("canny")  # nothing under a row without details
    assert " ".join(" ".join(lines[3:-1]).split()) == f"why: {LONG_WHY} enable: {LONG_HOW}"


@pytest.mark.parametrize("argv", [["nodes"], ["tasks"], ["tasks", "--counts"], ["tasks", "--split", "test"]])
def test_graph200k_tables_fit(argv, capsys):
    assert graph200k_main(argv) == 0
    out = capsys.readouterr().out
    assert "----" in out and _widest(out) <= TABLE_WIDTH


def test_annotators_list_fits_and_still_names_model_revision_and_licence(capsys):
    assert annotators_main(["list"]) == 0
    out = capsys.readouterr().out
    assert _widest(out) <= TABLE_WIDTH
    assert "model: depth-anything/Depth-Anything-V2-Large-hf @ 7581137eff8d (licence: CC-BY-NC-4.0)" in out


def test_run_summary_fits_with_the_reasons_as_details(capsys):
    summary = RunSummary("data/demo", inputs=8, succeeded=8, annotators=[
        AnnotatorRow("canny", "canny", "ran", shards=1, written=8),
        AnnotatorRow("fill_edit", "fill_edit", "skipped", already_present=1, why=LONG_WHY, how_to_enable=LONG_HOW)])
    print_summary(summary, [])
    out = capsys.readouterr().out
    assert _widest(out) <= TABLE_WIDTH
    assert "    why: weights of black-forest-labs/FLUX.1-Fill-dev" in out and "    enable: python -m annotators" in out


def test_a_long_listing_line_breaks_between_items_only():
    from graph200k.text_table import wrap_line

    for n in range(5, 60):
        items = [f"node_{i} {i * 7}" for i in range(n)]
        text = wrap_line("nodes: " + ", ".join(items))
        assert _widest(text) <= TABLE_WIDTH
        pieces = [piece for line in text.removeprefix("nodes: ").splitlines()
                  for piece in line.strip().rstrip(",").split(", ")]
        assert pieces == items  # each line holds whole items, none lost
