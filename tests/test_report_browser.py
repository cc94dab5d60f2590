"""The report in a real browser: Flyte runs write report.html, headless Chromium opens it.

Two reports: a tiny report task filled from a synthetic snapshot (every outcome, every tab), and the report of
a tiny real research run of the driver task, planned by a scripted LLM that titles one experiment with HTML.
Chromium is driven over the DevTools protocol (aiohttp's websocket client, already installed with litellm):
it checks the tabs, the chart's point markers, that the hostile title ran no script, that nothing logged a
console error, and that no tab is wider than 1280 px. Screenshots (light and dark) and the DOM land in
`test-artifacts/` at the repository root (`report-*` and `run-report-*`). Skips only when no Chromium binary
is found.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import flyte
import flyte.report
import litellm
import pytest
from report_snapshot import HOSTILE, N_CONFIRMED, N_FAILED, N_SUCCESS, snapshot
from test_agent import BROKEN_PATCH, PROJECT, ScriptedLLM, run_driver

import ui
from autoresearch.ledger import ledger as ledger_mod
from autoresearch_types import AutoresearchOutput

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
FLYTE_TEMPLATE_FONTS = "https://fonts.googleapis.com/"
"""Flyte's own report template links this stylesheet; our fragments fetch nothing."""
FLYTE_TEMPLATE_TITLE = "User Content"
"""The <title> of Flyte's report template; a hostile title that ran would have changed it."""

env = flyte.TaskEnvironment(name="report_tests")


def report_path(output_path: str) -> str:
    """Where Flyte writes a task's report: `<task output path>/report.html`; in a task, pass flyte.ctx().output_path."""
    return f"{str(output_path).rstrip('/')}/report.html"


def local_run_report_path(run: Any) -> Path | None:
    """The report of a finished local run: `run.url` is its metadata dir, each action writes `<dir>/<action>/`.

    Only the task declared with report=True writes a report.html; None if there is none (or on a cluster,
    where `run.url` is a console link).
    """
    found = sorted(Path(run.url).glob("*/report.html"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


@env.task(report=True)
async def write_report(snapshot_json: str) -> str:
    """Fill every report tab from the snapshot, flush, and return the report file's path."""
    for name, fragment in ui.render_report(json.loads(snapshot_json)).items():
        flyte.report.get_tab(name).replace(fragment)
    await flyte.report.flush.aio()
    return report_path(flyte.ctx().output_path)


def find_chromium() -> str | None:
    """A Chromium or Chrome binary: $CHROMIUM, else the usual names on PATH."""
    names = [os.environ.get("CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (Debian: apt-get install chromium)")


# ---------------------------------------------------------------- a minimal DevTools protocol client


class DevTools:
    """One page's DevTools websocket: send commands, keep every event, dismiss any JavaScript dialog."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.next_id, self.events = ws, 0, []

    async def _send(self, method: str, params: dict[str, Any]) -> int:
        """Send one command and return its id."""
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        return self.next_id

    async def _receive(self) -> dict[str, Any]:
        """The next message; events are recorded, and a dialog (which would block the page) is dismissed."""
        msg = await self.ws.receive_json(timeout=30)
        if "method" in msg:
            self.events.append(msg)
            if msg["method"] == "Page.javascriptDialogOpening":
                await self._send("Page.handleJavaScriptDialog", {"accept": True})
        return msg

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Run a command and return its result (raises on a protocol error)."""
        wanted = await self._send(method, params)
        while True:
            msg = await self._receive()
            if msg.get("id") == wanted:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def wait_event(self, method: str) -> dict[str, Any]:
        """Wait for the first event named `method` (including one already received)."""
        while not any(e["method"] == method for e in self.events):
            await self._receive()
        return next(e for e in self.events if e["method"] == method)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON value."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def named(self, method: str) -> list[dict[str, Any]]:
        """The params of every recorded event named `method`."""
        return [e.get("params", {}) for e in self.events if e["method"] == method]


def chromium_args(profile: Path) -> list[str]:
    """Headless Chromium with a debugging port, no network name resolution and no first-run noise."""
    args = [
        str(CHROMIUM),
        "--headless",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-extensions",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,900",
        "about:blank",
    ]
    return [*args, "--no-sandbox"] if os.geteuid() == 0 else args


def wait_port(profile: Path, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """The debugging port Chromium writes to DevToolsActivePort once it listens."""
    marker, deadline = profile / "DevToolsActivePort", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if marker.exists() and marker.read_text().strip():
            return int(marker.read_text().split()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"chromium did not start (exit {proc.poll()}); see {profile.parent / 'chromium.log'}")


@contextlib.asynccontextmanager
async def browser_page(tmp: Path) -> AsyncIterator[DevTools]:
    """Start headless Chromium, connect to its first page, and stop it afterwards."""
    profile = tmp / "profile"
    with (tmp / "chromium.log").open("wb") as log:
        proc = subprocess.Popen(chromium_args(profile), stdout=log, stderr=log)
    try:
        port = await asyncio.to_thread(wait_port, profile, proc)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            page = next(t for t in targets if t.get("type") == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield DevTools(ws)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the checks

PROBE = """(() => {
  const q = s => document.querySelectorAll(s);
  return {
    tabs: [...q('#flyte-frame-tabs li')].map(li => li.textContent.trim()),
    panes: [...q('#flyte-frame-container > div')].map(div => div.textContent),
    points: q('svg.chart circle.pt').length,
    kept: q('svg.chart circle.pt.kept').length,
    fails: q('svg.chart path.fail').length,
    title: document.title,
    scripts: [...document.scripts].map(s => s.textContent),
    images: document.images.length,
    handlers: q('[onerror], [onload]').length,
    hostile_as_text: document.body.textContent.includes(%s),
  };
})()"""


async def screenshot(page: DevTools, name: str, prefix: str = "report") -> Path:
    """A full-page PNG of the current view (at most 6000 px tall) under test-artifacts/."""
    height = await page.evaluate("document.documentElement.scrollHeight")
    clip = {"x": 0, "y": 0, "width": 1280, "height": min(int(height), 6000), "scale": 1}
    shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
    path = ARTIFACTS / f"{prefix}-{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


async def visit_tabs(page: DevTools, tabs: list[str], suffix: str = "", prefix: str = "report") -> dict[str, int]:
    """Click through every tab: screenshot each, and return each tab's page width."""
    widths = {}
    for i, tab in enumerate(tabs):
        await page.evaluate(f"document.querySelectorAll('#flyte-frame-tabs li')[{i}].click()")
        widths[tab] = await page.evaluate("document.documentElement.scrollWidth")
        path = await screenshot(page, tab.lower().replace(" ", "-") + suffix, prefix)
        print(f"screenshot: {path}")
    return widths


def console_errors(page: DevTools) -> list[str]:
    """Console errors, uncaught exceptions and error log entries, except Flyte's template font link failing."""
    errors = [json.dumps(p)[:300] for p in page.named("Runtime.exceptionThrown")]
    errors += [
        json.dumps(p)[:300] for p in page.named("Runtime.consoleAPICalled") if p.get("type") in ("error", "assert")
    ]
    for params in page.named("Log.entryAdded"):
        entry = params.get("entry", {})
        if entry.get("level") == "error" and not str(entry.get("url", "")).startswith(FLYTE_TEMPLATE_FONTS):
            errors.append(json.dumps(entry)[:300])
    return errors


async def open_report(tmp: Path, report: Path, prefix: str) -> dict[str, Any]:
    """Open `report` in headless Chromium at 1280 px, visit every tab (light, then two tabs dark) and return
    the PROBE plus each tab's width, console errors, requests and dialogs. Artifacts are named `<prefix>-*`."""
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(report, ARTIFACTS / f"{prefix}.html")
    async with browser_page(tmp) as page:
        for domain in ("Page", "Runtime", "Log", "Network"):
            await page.call(f"{domain}.enable")
        await page.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        await page.call("Page.navigate", url=report.as_uri())
        await page.wait_event("Page.loadEventFired")
        view = await page.evaluate(PROBE % json.dumps(HOSTILE))
        (ARTIFACTS / f"{prefix}-dom.html").write_text(await page.evaluate("document.documentElement.outerHTML"))
        view["widths"] = await visit_tabs(page, view["tabs"], prefix=prefix)
        await page.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
        await visit_tabs(page, view["tabs"][:2], suffix="-dark", prefix=prefix)
        view["errors"] = console_errors(page)
        view["requests"] = [p["request"]["url"] for p in page.named("Network.requestWillBeSent")]
        view["dialogs"] = page.named("Page.javascriptDialogOpening")
    print(f"report: {report}\nartifacts: {ARTIFACTS}/{prefix}*")
    return view


def assert_hostile_inert(view: dict[str, Any]) -> None:
    """The hostile title ran nothing and injected nothing, the page is quiet and offline, and it fits 1280 px."""
    assert view["title"] == FLYTE_TEMPLATE_TITLE and not view["dialogs"], (
        f"the hostile title ran script: {view['title']!r}, {len(view['dialogs'])} dialogs"
    )
    assert view["images"] == 0 and view["handlers"] == 0, "no <img> or onerror/onload attribute was injected"
    (script,) = view["scripts"]
    assert "handleLinkClick" in script and "pwned" not in script, "only Flyte's own tab script is in the page"
    assert view["hostile_as_text"], "the hostile title is shown as text"
    assert not view["errors"], f"console errors: {view['errors']}"
    requests = view["requests"]
    assert all(u.startswith(("file://", FLYTE_TEMPLATE_FONTS)) for u in requests), requests
    assert not any(u.endswith("/x") for u in requests), f"the injected <img src=x> was fetched: {requests}"
    assert all(w <= 1280 for w in view["widths"].values()), f"wider than 1280 px: {view['widths']}"


async def run_report_task(tmp: Path) -> Path:
    """Run the report task locally, copy its report.html into `tmp`, and remove the run's metadata dir."""
    flyte.init(org="local", project="autoresearch-tests", domain="development", log_level=logging.ERROR)
    ctx = flyte.with_runcontext(mode="local", raw_data_path=str(tmp / "raw"), disable_run_cache=True)
    run = await ctx.run.aio(write_report, snapshot_json=json.dumps(snapshot()))
    written = Path((await run.outputs.aio())[0])
    assert written == local_run_report_path(run), "both ways of finding the report agree"
    assert written.is_file()
    copy = tmp / "report.html"
    shutil.copyfile(written, copy)
    shutil.rmtree(Path(run.url), ignore_errors=True)
    return copy


@pytest.mark.timeout(180)
async def test_report_in_headless_chromium(tmp_path: Path) -> None:
    report = await run_report_task(tmp_path)
    view = await open_report(tmp_path, report, "report")
    assert_hostile_inert(view)
    assert view["tabs"] == list(ui.REPORT_TABS)
    assert (view["points"], view["kept"], view["fails"]) == (N_SUCCESS, N_CONFIRMED, N_FAILED)


# ---------------------------------------------------------------- the report of a tiny real research run

AGENT_TAB = "Agent"
"""The tab the code-mode `flyte.ai.agents.Agent` adds after ours: its messages and the code it ran."""
FINAL_ANSWER = "Done: one batch ran, and its best experiment has an HTML title."
RUN_SCRIPT = [
    "```python\n"
    "saved = edit_train_code_batch(["
    f"{{'title': {HOSTILE!r}, 'overrides': {{'learning_rate': 0.006}}, 'hypothesis': 'faster'}},"
    "{'title': 'Dropout 0.1', 'overrides': {'dropout': 0.1}},"
    f"{{'title': 'Broken', 'patches': {BROKEN_PATCH!r}, 'change_summary': 'raises'}}])\n"
    "ran = run_experiment_batch([s['title'] for s in saved['saved']])\n"
    "{'saved': saved, 'ran': ran}\n```",
    FINAL_ANSWER,
]
"""One batch (the hostile title, a normal edit, a crash), then a plain-text final answer."""


def run_scripted_research(tmp: Path) -> tuple[Path, AutoresearchOutput]:
    """Run the driver task on the tiny bundle with the scripted LLM; copy its report.html into `tmp`."""
    out = run_driver(
        memory_key=f"report-browser-{uuid.uuid4().hex[:8]}", model="scripted/agent", n_experiments=6, batch_size=3
    )
    assert out.error == "" and out.summary.endswith(FINAL_ANSWER), (out.error, out.summary)
    written = Path(out.report_path)
    copy = tmp / "run-report.html"
    shutil.copyfile(written, copy)
    run_dir = written.parents[1]  # <local metadata dir>/<run>/<action>/report.html
    if run_dir.parent.name == "metadata":
        shutil.rmtree(run_dir, ignore_errors=True)
    return copy, out


@pytest.mark.timeout(300)
async def test_real_run_report_in_headless_chromium(
    tmp_path: Path, state_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger_mod.init_local(project=PROJECT, log_level=logging.CRITICAL)
    monkeypatch.setattr(
        litellm, "custom_provider_map", [{"provider": "scripted", "custom_handler": ScriptedLLM(RUN_SCRIPT)}]
    )
    report, out = await asyncio.to_thread(run_scripted_research, tmp_path)
    outcomes = {row["title"]: row["outcome"] for row in out.leaderboard}
    assert outcomes == {"baseline": "success", HOSTILE: "success", "Dropout 0.1": "success", "Broken": "crash"}
    n_success = sum(row["outcome"] == "success" for row in out.leaderboard)
    n_failed = sum(row["outcome"] != "success" for row in out.leaderboard)
    n_kept = sum(row["label"] == "confirmed" for row in out.leaderboard)

    view = await open_report(tmp_path, report, "run-report")
    assert_hostile_inert(view)
    assert view["tabs"] == [*ui.REPORT_TABS, AGENT_TAB]
    assert (view["points"], view["kept"], view["fails"]) == (n_success, n_kept, n_failed)
    panes = dict(zip(view["tabs"], view["panes"], strict=True))
    assert HOSTILE in panes["Leaderboard"], "the hostile title is a leaderboard row, as text"
    agent = panes[AGENT_TAB]
    assert f"'title': {HOSTILE!r}" in agent, "the Agent tab shows the code the LLM wrote, as text"
    assert FINAL_ANSWER in agent
