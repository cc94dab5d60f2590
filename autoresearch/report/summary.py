"""Summaries of a memory key from its stored records alone: pure functions from plain data to a dict and to text.

`summary` and `list` (see `autoresearch.session.commands`) read the store and hand the records in; nothing here trains, calls an LLM,
touches Flyte or reads the clock, so the same records always give the same bytes. `build_summary` gathers the
content once; `summary_text` and `summary_json` are two renderings of that one dict, so they never disagree.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from autoresearch.ledger.records import BASELINE_TITLE, ExperimentRecord, LeaderboardRow
from autoresearch.ledger.verdicts import GateRule, Judgement
from autoresearch.ledger.views import fmt_mean, lineage
from autoresearch.report.text import audit_text, cost_per_gain, cost_per_gain_text, leaderboard_text, transfer_text

LLM_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "cost_usd")
"""The LLM usage counters a session's totals carry (`llm.Usage`) that a key's summary adds up."""


def plain(value: Any) -> Any:
    """`value` as JSON-friendly plain data (what a JSON round trip gives), so text and JSON see the same values."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------- lineage and the best path


def rooted(records: list[ExperimentRecord]) -> list[ExperimentRecord]:
    """The records with the baseline as the parent of every experiment saved without one (or with a parent the
    ledger does not know): such an edit starts from the baseline's code, so the tree has one root."""
    titles = {r.title for r in records}
    if BASELINE_TITLE not in titles:
        return records
    return [
        r
        if r.title == BASELINE_TITLE or r.spec.parent in titles
        else dataclasses.replace(r, spec=dataclasses.replace(r.spec, parent=BASELINE_TITLE))
        for r in records
    ]


def best_path(records: list[ExperimentRecord], incumbent: str | None) -> list[str]:
    """The titles from the root to the incumbent along the specs' `parent` links (root first); [] without one.

    Give it `rooted(records)` for a path that starts at the baseline."""
    parents = {r.title: r.spec.parent for r in records}
    path: list[str] = []
    title = incumbent
    while title in parents and title not in path:
        path.append(title)
        title = parents[title]
    return path[::-1]


def mark_path(nodes: list[dict[str, Any]], path: list[str]) -> list[dict[str, Any]]:
    """The lineage tree with `best_path: true` on the nodes of `path` (a copy; the input is not changed)."""
    on = set(path)
    return [{**n, "best_path": n["title"] in on, "children": mark_path(n.get("children", []), path)} for n in nodes]


def _ascii(text: str) -> str:
    return text.replace("±", "+/-")


def node_text(node: dict[str, Any], row: dict[str, Any] | None) -> str:
    """One tree line's content: `* title  mean +/- se (n seeds) [label]`, `*` marking the best path."""
    if row and row.get("rank") is not None:
        metric = _ascii(fmt_mean(row.get("val_bpb"), row.get("se"), row.get("n_seeds", 0)))
    else:
        metric = node.get("outcome") or "not run"
    mark = "* " if node.get("best_path") else ""
    best = " <- incumbent" if node.get("incumbent") else ""
    return f"{mark}{node['title']}  {metric} [{node.get('label') or '-'}]{best}"


def tree_text(nodes: list[dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    """The fork tree in ASCII (`|--`, `` `-- ``), parent above its children in run order, best path starred."""
    by_title = {r["title"]: r for r in rows}
    lines: list[str] = []

    def walk(children: list[dict[str, Any]], prefix: str) -> None:
        for i, node in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'`-- ' if last else '|-- '}{node_text(node, by_title.get(node['title']))}")
            walk(node.get("children", []), prefix + ("    " if last else "|   "))

    for root in nodes:
        lines.append(node_text(root, by_title.get(root["title"])))
        walk(root.get("children", []), "")
    return "\n".join(lines) or "(no experiments)"


# ---------------------------------------------------------------- verdicts and who decided


def decided_by(verdict: Any) -> str:
    """Who decided a gate verdict: its `decided_by` (or `by`) field when it carries one, else "rule"."""
    return str(getattr(verdict, "decided_by", None) or getattr(verdict, "by", None) or "rule")


def verdict_rows(
    rows: list[LeaderboardRow], verdicts: Judgement, human: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per experiment in run order: the gate's label and reason, and who decided. A stored human verdict
    makes it `human`, with the person's decision, note and time (the rule's label and reason stay beside it)."""
    out = []
    for row in sorted(rows, key=lambda r: (r.seq is None, r.seq or 0)):
        person = human.get(row.title)
        out.append(
            {
                "title": row.title,
                "label": row.label,
                "reason": row.verdict,
                "decided_by": "human" if person else decided_by(verdicts.verdicts.get(row.title)),
                "human_decision": person.get("decision") if person else None,
                "note": person.get("note", "") if person else "",
                "at": person.get("at") if person else None,
            }
        )
    return out


def verdict_line(v: dict[str, Any]) -> str:
    """`- title [label] by rule: reason`, or the person's decision and note first when a human decided."""
    if v["decided_by"] == "human":
        note = f': "{v["note"]}"' if v.get("note") else ""
        return f"- {v['title']} [{v['label']}] by human: {v['human_decision']}{note} ({v['at']}); rule: {v['reason']}"
    return f"- {v['title']} [{v['label']}] by {v['decided_by']}: {v['reason']}"


# ---------------------------------------------------------------- totals


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def totals(records: list[ExperimentRecord], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    """Experiments, runs, measured compute (every run's wall and training CPU seconds) and the LLM usage summed
    over the stored sessions."""
    runs = [run.result for rec in records for run in rec.runs]
    llm = {k: 0.0 for k in LLM_FIELDS}
    for s in sessions:
        usage = (s.get("totals") or {}).get("llm") or {}
        for k in LLM_FIELDS:
            llm[k] += _number(usage.get(k))
    return {
        "experiments": len(records),
        "experiments_run": sum(1 for r in records if r.runs),
        "runs": len(runs),
        "compute": {
            "wall_s": round(sum(_number(r.wall_seconds) for r in runs), 1),
            "train_cpu_s": round(sum(_number(r.train_cpu_s) for r in runs), 1),
        },
        "llm": {
            "sessions": len(sessions),
            "calls": int(llm["calls"]),
            "prompt_tokens": int(llm["prompt_tokens"]),
            "completion_tokens": int(llm["completion_tokens"]),
            "cost_usd": round(llm["cost_usd"], 6),
        },
    }


def with_cost(t: dict[str, Any], confirmed: int) -> dict[str, Any]:
    """The totals with what each confirmed gain cost (training CPU-seconds and LLM dollars of the whole key)."""
    return {**t, "cost_per_gain": cost_per_gain(confirmed, t["compute"]["train_cpu_s"], t["llm"]["cost_usd"])}


def with_transfer(data: dict[str, Any], transfer: dict[str, Any] | None) -> dict[str, Any]:
    """The summary with the key's latest transfer check (None when none ran)."""
    return {**data, "transfer": plain(transfer) if transfer else None}


def totals_text(t: dict[str, Any]) -> str:
    """The totals in four lines."""
    c, llm = t["compute"], t["llm"]
    lines = [
        f"experiments: {t['experiments']} ({t['experiments_run']} run), runs: {t['runs']}",
        f"compute: {c['wall_s']:.1f} s wall, {c['train_cpu_s']:.1f} s training CPU",
        f"LLM: ${llm['cost_usd']:.4f} over {llm['calls']} calls in {llm['sessions']} session(s) "
        f"({llm['prompt_tokens']} prompt + {llm['completion_tokens']} completion tokens)",
    ]
    if t.get("cost_per_gain"):
        lines.append(cost_per_gain_text(t["cost_per_gain"]))
    return "\n".join(lines)


# ---------------------------------------------------------------- the whole summary


def last_activity(records: list[ExperimentRecord], stamps: list[str]) -> str | None:
    """The newest record time: specs' creation, runs' arrival and any other stamps given (plans, sessions, human
    verdicts). Every stamp is UTC ISO with microseconds (`edits.now`), so the text order is the time order."""
    times = [r.spec.created_at for r in records] + [run.recorded_at for r in records for run in r.runs] + stamps
    times = [t for t in times if isinstance(t, str) and t]
    return max(times) if times else None


def session_rows(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each stored session, oldest first: when it closed, its status, and the research program it ran under (its
    sha256, where it came from, and whether the planner read it), so a result traces to its instructions."""
    rows = []
    for s in sessions:
        program = s.get("program") if isinstance(s.get("program"), dict) else {}
        rows.append(
            {
                "at": s.get("at"),
                "status": (s.get("totals") or {}).get("status"),
                "program_sha256": program.get("sha256"),
                "program_source": program.get("source"),
                "program_used": program.get("used"),
            }
        )
    return rows


def activity_stamps(sessions: list[dict[str, Any]], human: dict[str, dict[str, Any]]) -> list[str]:
    """The record times besides specs and runs: each session's close and each human verdict."""
    return [str(r.get("at") or "") for r in [*sessions, *human.values()]]


def build_summary(
    key: str,
    records: list[ExperimentRecord],
    verdicts: Judgement,
    rows: list[LeaderboardRow],
    rule: GateRule,
    audit: dict[str, Any] | None,
    sessions: list[dict[str, Any]],
    human: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Everything `summary` shows, as plain data: leaderboard, lineage with the best path, verdicts and who made
    them, sigma and the gate, the latest held-out audit, the totals."""
    board = plain([r.to_dict() for r in rows])
    tree = rooted(records)
    path = best_path(tree, verdicts.incumbent)
    return plain(
        {
            "memory_key": key,
            "incumbent": verdicts.incumbent,
            "leaderboard": board,
            "lineage": {"tree": mark_path(lineage(tree, rows), path), "best_path": path},
            "verdicts": verdict_rows(rows, verdicts, human),
            "noise": {
                "sigma": verdicts.sigma,
                "df": verdicts.df,
                "gate": rule.describe(),
                "rule": dataclasses.asdict(rule),
                "mde": verdicts.mde,
                "campaign": verdicts.campaign.to_dict() if verdicts.campaign else None,
            },
            "audit": audit or None,
            "totals": with_cost(totals(records, sessions), sum(r.label == "confirmed" for r in rows)),
            "last_activity": last_activity(records, activity_stamps(sessions, human)),
            "sessions": session_rows(sessions),
        }
    )


def summary_json(data: dict[str, Any]) -> str:
    """The summary as one JSON object, keys sorted (byte-identical for the same records)."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False)


def noise_text(noise: dict[str, Any]) -> str:
    """sigma with its degrees of freedom, the gate rule in words, the incumbent's minimum detectable effect and the
    campaign's false-confirmation bound."""
    sigma = "not measured yet" if noise["sigma"] is None else f"{noise['sigma']:.4f} val_bpb (df {noise['df']})"
    lines = [f"sigma (pooled seed noise): {sigma}", noise["gate"]]
    if noise.get("mde") is not None:
        lines.append(f"minimum detectable effect against the incumbent (80% chance): {noise['mde']:.4f} val_bpb")
    if noise.get("campaign"):
        lines.append(f"campaign: {noise['campaign']['text']}")
    return "\n".join(lines)


def summary_text(data: dict[str, Any]) -> str:
    """The summary for a terminal: one titled section per part of `build_summary`'s dict."""
    path = data["lineage"]["best_path"]
    audit = audit_text(data["audit"]) if data["audit"] else "no held-out audit yet (it runs when research ends)"
    sections = [
        (f"Memory key {data['memory_key']}", f"last activity: {data['last_activity'] or '-'}"),
        ("Leaderboard", leaderboard_text(data["leaderboard"], limit=max(1, len(data["leaderboard"])))),
        (
            "Lineage (* = best path: " + (" -> ".join(path) if path else "none yet") + ")",
            tree_text(data["lineage"]["tree"], data["leaderboard"]),
        ),
        ("Verdicts (who decided)", "\n".join(verdict_line(v) for v in data["verdicts"]) or "(none)"),
        ("Noise and gate", noise_text(data["noise"])),
        ("Held-out test audit (latest)", audit),
        ("Transfer check (latest)", transfer_text(data["transfer"]) if data.get("transfer") else "none run"),
        ("Totals", totals_text(data["totals"])),
    ]
    return "\n\n".join(f"{title}\n{'=' * len(title)}\n{body}" for title, body in sections) + "\n"


# ---------------------------------------------------------------- list


def key_row(key: str, records: list[ExperimentRecord], rows: list[LeaderboardRow], stamps: list[str]) -> dict[str, Any]:
    """One `list` row: the key, its experiment and run counts, its best (the incumbent) and its last activity."""
    best = next((r for r in rows if r.incumbent), None)
    return plain(
        {
            "memory_key": key,
            "experiments": len(records),
            "runs": sum(len(r.runs) for r in records),
            "best": None
            if best is None
            else {"title": best.title, "val_bpb": best.val_bpb, "se": best.se, "n_seeds": best.n_seeds},
            "last_activity": last_activity(records, stamps),
        }
    )


def sort_keys_by_activity(keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest activity first; keys without any record time last; ties by key name."""
    dated = sorted((k for k in keys if k.get("last_activity")), key=lambda k: k["memory_key"])
    dated.sort(key=lambda k: k["last_activity"], reverse=True)
    return dated + sorted((k for k in keys if not k.get("last_activity")), key=lambda k: k["memory_key"])


def list_text(keys: list[dict[str, Any]], where: str) -> str:
    """The keys as a fixed-width table, or a line saying there are none under `where`."""
    if not keys:
        return f"no memory keys under {where}\n"
    head = f"{'memory key':<32} {'experiments':>11} {'runs':>5}  {'best':<40} last activity"
    lines = [head, "-" * len(head)]
    for k in keys:
        best = k["best"]
        shown = "-" if best is None else f"{best['title'][:28]} {best['val_bpb']:.4f}"
        if best is not None and best["title"] == BASELINE_TITLE:
            shown += " (no gain)"
        lines.append(
            f"{k['memory_key']:<32} {k['experiments']:>11} {k['runs']:>5}  {shown:<40} {k['last_activity'] or '-'}"
        )
    return "\n".join(lines) + "\n"
