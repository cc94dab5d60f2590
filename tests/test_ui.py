"""Unit tests on the pure report renderers: tabs, escaping, the chart, diffs, lineage, and partial snapshots."""

from __future__ import annotations

import copy
import html
import re
from html.parser import HTMLParser
from typing import Any

import pytest
import report_snapshot
from report_snapshot import HOSTILE, N_CONFIRMED, N_FAILED, N_SUCCESS, snapshot

import ui
from autoresearch.agent import prompts
from autoresearch.report import chart as ui_chart
from autoresearch.report import html as ui_html
from autoresearch.report import parts as ui_parts


class TagCollector(HTMLParser):
    """Collects every start tag with its attributes, and the page's text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(fragment: str) -> TagCollector:
    """Parse an HTML fragment into its tags and text."""
    collector = TagCollector()
    collector.feed(fragment)
    collector.close()
    return collector


def count_class(fragment: str, tag: str, cls: str) -> int:
    """How many `tag` elements carry the CSS class `cls`."""
    return sum(1 for t, a in parse(fragment).tags if t == tag and cls in (a.get("class") or "").split())


@pytest.fixture()
def snap() -> dict[str, Any]:
    """A fresh copy of the realistic snapshot."""
    return snapshot()


def test_tabs_in_order(snap: dict[str, Any]) -> None:
    tabs = ui.render_report(snap)
    assert list(tabs) == ["Summary", "Leaderboard", "Code edits", "Lineage", "Activity", "Memory"]
    assert all(isinstance(v, str) and v.startswith('<div class="ar">') for v in tabs.values())


@pytest.mark.parametrize("tab", ui_html.TABS)
def test_hostile_text_is_escaped_in_every_tab(snap: dict[str, Any], tab: str) -> None:
    fragment = ui.render_report(snap)[tab]
    parsed = parse(fragment)
    assert not [t for t, _ in parsed.tags if t in ("script", "img", "iframe")]
    assert not [k for _, attrs in parsed.tags for k in attrs if k.startswith("on")]
    assert "document.title='pwned'" in html.unescape("".join(parsed.text)), "the hostile text is shown as text"
    assert html.escape(HOSTILE, quote=True) in fragment or html.escape(repr(HOSTILE)) in fragment


def test_chart_points_one_per_experiment_seeds_beside_and_confirmed_best_non_increasing(snap: dict[str, Any]) -> None:
    points = ui.chart_points(snap)
    assert sum(p["val_bpb"] is not None for p in points) == N_SUCCESS
    assert sum(p["kind"] == "failed" for p in points) == N_FAILED
    assert [p["x"] for p in points] == list(range(1, len(points) + 1))
    bests = [p["best"] for p in points if p["best"] is not None]
    assert all(b <= a for a, b in zip(bests, bests[1:], strict=False))
    assert [p["title"] for p in points if p["kind"] == "confirmed"] == ["lr-warmup", "relu-squared"]
    assert next(p for p in points if p["title"] == "relu-squared")["seeds"] == [1.79, 1.795]
    assert bests[0] == pytest.approx(1.95) and bests[-1] == pytest.approx(1.795), "the baseline's mean, then gains"


def test_chart_svg_markers_and_step_line(snap: dict[str, Any]) -> None:
    svg = ui_chart.chart_svg(snap)
    assert count_class(svg, "circle", "pt") == N_SUCCESS
    assert count_class(svg, "circle", "kept") == N_CONFIRMED
    assert count_class(svg, "circle", "seed") == 6 + 1, (
        "the baseline's and two confirmed runs' other seeds, and the legend"
    )
    assert count_class(svg, "path", "fail") == N_FAILED
    line = next(a["d"] for t, a in parse(svg).tags if t == "path" and a.get("class") == "best-line")
    tokens = re.findall(r"([MHV])([\d.]+)(?: ([\d.]+))?", line)
    ys = [float(tokens[0][2])] + [float(v) for cmd, v, _ in tokens if cmd == "V"]
    assert len(ys) == 3, "the baseline's mean, then one step down per confirmed gain"
    assert ys == sorted(ys), "SVG y grows downward, so a non-increasing best means non-decreasing y"


def test_chart_follows_result_order_not_creation_order(snap: dict[str, Any]) -> None:
    exps = snap["experiments"]
    exps[1]["seq"], exps[4]["seq"] = exps[4]["seq"], exps[1]["seq"]
    titles = [p["title"] for p in ui.chart_points(snap)]
    assert titles.index("relu-squared") < titles.index("lr-warmup")


def test_diff_lines_are_colour_coded() -> None:
    text = "--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n x = 1\n-y = 2\n+y = '<b>3</b>'\n"
    classes = [a.get("class") for t, a in parse(ui_html.diff_html(text)).tags if t == "span"]
    assert classes == ["dh", "dh", "hunk", "ctx", "del", "add"]
    assert "&lt;b&gt;3&lt;/b&gt;" in ui_html.diff_html(text)


def test_code_edits_show_diffs_vs_parent_and_baseline(snap: dict[str, Any]) -> None:
    fragment = ui.render_report(snap)["Code edits"]
    card = fragment[fragment.index("<h3>relu-squared</h3>") :].split('<div class="card">')[0]
    assert "diff vs parent lr-warmup" in card and "diff vs baseline baseline" in card
    assert '<span class="add">+        return self.drop(self.proj(F.relu(self.fc(x)).square()))</span>' in card
    assert '<span class="del">-        return self.drop(self.proj(F.gelu(self.fc(x))))</span>' in card
    assert "expected" in card and "-0.03 val_bpb" in card and "Δ vs parent -0.1000" in card
    assert "No code change (config overrides only)." in fragment
    long = ui_html.diff_html("\n".join(f"+line {i}" for i in range(1000)), max_lines=10)
    assert long.count('class="add"') == 10 and "990 more diff lines" in long


def test_leaderboard_table(snap: dict[str, Any]) -> None:
    fragment = ui.render_report(snap)["Leaderboard"]
    headers = ("rank", "title", "val_bpb (mean ± se)", "seeds", "Δ vs best", "params", "steps", "resources")
    for header in (*headers, "OOM retries", "verdict"):
        assert f">{header}</th>" in fragment
    best_row = fragment[fragment.index('<tr class="best">') :].split("</tr>")[0]
    assert "relu-squared" in best_row and "1.7950" in best_row and "+0.0000" in best_row
    assert "± 0.0029" in best_row and '<td class="num">3</td>' in best_row and "badge confirmed" in best_row
    oom_row = fragment[fragment.index("<td>wide-mlp") :].split("</tr>")[0]
    assert "6144 MB" in oom_row and '<td class="num">2</td>' in oom_row and "badge oom" in oom_row
    assert fragment.index("<svg") < fragment.index("<table")


def test_lineage_highlights_the_path_to_the_confirmed_best(snap: dict[str, Any]) -> None:
    fragment = ui.render_report(snap)["Lineage"]
    parsed = parse(fragment)
    spans = [a.get("class") for t, a in parsed.tags if t == "span" and "node" in (a.get("class") or "")]
    assert spans.count("node best") == 1 and spans.count("node onpath") == 2
    assert '<span class="node best">relu-squared</span> 1.7950' in fragment
    assert "baseline → lr-warmup → relu-squared" in fragment


def test_summary_figures_and_verdict(snap: dict[str, Any]) -> None:
    fragment = ui.render_report(snap)["Summary"]
    assert "+8.08%" in fragment and "1.7950" in fragment and "relu-squared" in fragment
    compute = sum(run.result.wall_seconds for rec in report_snapshot.records() for run in rec.runs)
    assert snap["totals"]["compute_s"] == compute, "the snapshot's compute is every recorded run's wall time"
    assert "12,800" in fragment and "$0.0123" in fragment and f"{compute:.0f} s" in fragment
    assert "12 / 19" in fragment and "not run" in fragment
    assert "seed noise sigma" in fragment and "0.0075" in fragment
    assert "Confirmed gain: relu-squared at 1.7950 ± 0.0029 (3 seeds)" in fragment
    assert "Gain +0.1575 ± 0.0063 val_bpb, from 2 fresh seeds (the screen seed is left out)" in fragment
    assert "Welch&#x27;s t" in fragment or "Welch's t" in fragment
    assert (
        "Minimum detectable effect" in fragment and "Campaign error control: expected false confirmations" in fragment
    )
    assert "Cost per confirmed gain" in fragment and "(2 gains)" in fragment


def test_summary_says_plainly_when_nothing_beat_the_noise(snap: dict[str, Any]) -> None:
    for row in snap["leaderboard"]:
        row["incumbent"] = row["title"] == "baseline"
        row["label"] = "within_noise" if row["label"] == "confirmed" else row["label"]
    fragment = ui.render_report(snap)["Summary"]
    assert "No edit beat seed noise (sigma = 0.0075)" in fragment and "best val_bpb (baseline)" in fragment


def test_activity_and_memory(snap: dict[str, Any]) -> None:
    tabs = ui.render_report(snap)
    assert "1 turns · 1 tool calls (95.5 s) · 1 code blocks · 1 errors" in tabs["Activity"]
    assert "code the agent ran" in tabs["Activity"] and "1:38" in tabs["Activity"]
    memory = tabs["Memory"]
    assert memory.index("b001") < memory.index("b000"), "newest batch plan first"
    assert "abc123" in memory and "fork the winner" in memory
    assert "relu^2 MLP should lower val_bpb" in memory, "hypotheses fall back to the experiment specs"


def test_empty_snapshot_renders_placeholders() -> None:
    for snap in ({}, {"run": None, "experiments": None, "leaderboard": "x", "lineage": [None], "activity": [1]}):
        tabs = ui.render_report(snap)
        assert list(tabs) == list(ui_html.TABS)
        assert "No results yet" in tabs["Leaderboard"] and "No experiments yet." in tabs["Lineage"]
    assert ui.chart_points({}) == []


def test_run_in_progress_with_no_results(snap: dict[str, Any]) -> None:
    for exp in snap["experiments"]:
        exp["result"], exp["seq"] = None, None
    snap["leaderboard"] = [
        dict(r, rank=None, val_bpb=None, label="not_run", outcome=None, incumbent=False) for r in snap["leaderboard"]
    ]
    snap["totals"] = {}
    tabs = ui.render_report(snap)
    assert ui.chart_points(snap) == [] and "No results yet" in tabs["Leaderboard"]
    assert "no result yet" in tabs["Summary"] and "badge not_run" in tabs["Code edits"]


def test_all_failures_and_bad_numbers(snap: dict[str, Any]) -> None:
    broken = copy.deepcopy(snap)
    for exp in broken["experiments"]:
        exp["result"] = {"outcome": "success", "val_bpb": float("nan")} if exp["result"] else None
    broken["experiments"][0]["result"] = {"outcome": "timeout", "val_bpb": None, "resources": "weird"}
    broken["usage"] = {"prompt_tokens": "many", "cost_usd": float("inf")}
    broken["lineage"] = [{"title": "baseline", "val_bpb": None, "outcome": "timeout", "children": [{"title": 3}]}]
    broken["leaderboard"] = [dict(r, val_bpb=None) for r in broken["leaderboard"]]
    points = ui.chart_points(broken)
    assert points and all(p["kind"] == "failed" and p["best"] is None for p in points)
    svg = ui_chart.chart_svg(broken)
    assert count_class(svg, "circle", "pt") == 0 and count_class(svg, "path", "fail") == len(points)
    tabs = ui.render_report(broken)
    assert 'class="best-line"' not in tabs["Leaderboard"] and "No successful experiment yet." in tabs["Lineage"]


def test_run_error_is_shown_escaped(snap: dict[str, Any]) -> None:
    snap["run"].update(status="error", error=f"Traceback: {HOSTILE}")
    fragment = ui.render_report(snap)["Summary"]
    assert "badge error" in fragment and "Traceback: &lt;script&gt;" in fragment


def test_self_contained_and_dark_mode(snap: dict[str, Any]) -> None:
    for fragment in ui.render_report(snap).values():
        assert "prefers-color-scheme:dark" in fragment
        assert not [k for _, attrs in parse(fragment).tags for k in attrs if k in ("src", "href", "xlink:href")]
    assert not re.search(r"url\(|@import|https?:", ui_parts.CSS)


def test_terminal_lines_show_the_keys_counter_outcome_metric_and_verdict() -> None:
    jobs = [{"title": "Cosine LR", "seed": 0, "role": "screen"}, {"title": "SiLU", "seed": 1, "role": "confirm"}]
    start = ui.batch_start_line("batch-002", jobs, 5, 16)
    assert "[###-------] 5/16" in start and "starting: Cosine LR, SiLU (seed 1, confirm)" in start
    standing = {"verdict": "unconfirmed", "mean_val_bpb": 1.23456, "se": None, "n_seeds": 1}
    result = {"outcome": "success", "val_bpb": 1.23456, "wall_seconds": 3}
    ok = ui.experiment_line("batch-002", 6, 16, jobs[0], result, standing)
    assert (
        "[####------] 6/16" in ok
        and "success" in ok
        and "1.2346" in ok
        and "-> unconfirmed (mean 1.2346, 1 seeds)" in ok
    )
    oom = {"outcome": "oom", "val_bpb": None, "oom_retries": 2, "message": "killed"}
    bad = ui.experiment_line("batch-002", 16, 16, jobs[1], oom, {"verdict": "failed"})
    assert "[##########] 16/16" in bad and "after 2 OOM retries" in bad and "(killed)" in bad and "-> failed" in bad
    assert "SiLU (seed 1, confirm)" in bad


def test_leaderboard_text_shows_mean_se_seeds_and_verdict(snap: dict[str, Any]) -> None:
    text = ui.leaderboard_text(snap["leaderboard"])
    line = next(x for x in text.splitlines() if "relu-squared" in x)
    assert "1.7950" in line and "0.0029" in line and " 3 " in line and "confirmed *best*" in line
    assert "failed (oom)" in text


def test_directive_carries_budget_bounds_noise_and_prior_research(snap: dict[str, Any]) -> None:
    from autoresearch_types import DatasetProfile, ExperimentConfig, WorkshopBounds

    profile = DatasetProfile("shakespeare", 1, 512, 100_000, 9_000, 300, 20, 3.1)
    budget = prompts.budget_dict(8, 4, 2, 300, 30.0, 12)
    budget.update(max_runs=19, started=3, ideas=0)
    noise = {"sigma": 0.0123, "df": 2, "gate": "THE GATE", "baseline": {"val_bpb": 2.5, "se": 0.01, "n_seeds": 3}}
    noise.update(mde=0.1234, campaign="expected false confirmations <= 0.0000 over 0 screened candidate(s)")
    fresh = prompts.directive(profile, ExperimentConfig(), WorkshopBounds(), budget, noise=noise)
    assert "memory key: 8 in total, 0 tried so far" in fresh and "runs for this memory key: 19 in total" in fresh
    assert "None yet" in fresh and '"n_layer": [' in fresh
    assert "about 0.1234 val_bpb better to be confirmed with 80% chance" in fresh
    assert "error control over the whole key: expected false confirmations <= 0.0000" in fresh
    assert "sigma = 0.0123" in fresh and "THE GATE" in fresh and "2.5000 ± 0.0100 over 3 seeds" in fresh
    assert "token_budget" in fresh and "are refused" in fresh and "truncated" in fresh
    assert "held out for validation: 20 documents" in fresh and "test split you never see" in fresh
    assert '"seed"' not in fresh.split("base config:")[1].split("\n")[0], "the seed belongs to the run"
    best = {"title": "LR up", "val_bpb": 1.5}
    resumed = prompts.directive(
        profile, ExperimentConfig(), WorkshopBounds(), budget, "| # | title |\n| 1 | LR up |", best
    )
    assert "Prior research under this memory key" in resumed
    assert "Confirmed best so far: 'LR up' at mean val_bpb 1.5000" in resumed
