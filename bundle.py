"""Flyte task environments (image, resources, pod template, shipped files, secret) and the cached data-bundle tasks.

`build_bundle` is cached by its inputs (the key's secret split seed among them) plus a hash of `prepare.py`, so
editing the fixed infrastructure rebuilds the bundle and nothing else does. Bundles live in a stable directory
under the state dir (never `/tmp`), because a cached `Dir` must keep pointing at real files. A `Bundle` carries
the sha256 of its held-out files, recorded as it is built: the trusted side checks them before any untrusted
code runs (`prepare.read_verified`), wherever the files were copied since. A pod downloads bundles into its own
state dir, never `/tmp` (see `local_path`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import time
import tomllib
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import flyte
from flyte.io import Dir, File

import prepare
from autoresearch.sandbox import trust
from autoresearch_types import DatasetProfile

ENTRY = trust.REPO / "parallelized_autoresearch.py"


def script_dependencies(script: Path) -> tuple[str, ...]:
    """The `dependencies` of a script's PEP 723 header: the project's one dependency list."""
    block = re.search(r"^# /// script\n(.*?)^# ///$", script.read_text(), re.S | re.M)
    if block is None:
        raise ValueError(f"{script} has no PEP 723 header")
    return tuple(tomllib.loads("\n".join(line[2:] for line in block.group(1).splitlines()))["dependencies"])


RUNTIME_PACKAGES = script_dependencies(ENTRY)
"""The runtime dependencies, read from the entry point's PEP 723 header; pyproject.toml must match it (tested)."""
IMAGE_ONLY_PACKAGES = ("unionai-reuse==0.2.0",)
"""In the cluster image only: what `flyte.ReusePolicy` (`--reuse`) needs in the container."""
APT_PACKAGES = ("bubblewrap",)
"""System packages of the image: `bwrap` gives experiments the strongest sandbox (see `backends.default_backend`)."""
TORCH_INDEX = {"cpu": "https://download.pytorch.org/whl/cpu", "gpu": None}
"""Where each image variant gets torch: the CPU wheels (no CUDA libraries), or PyPI's CUDA build."""
IMAGE_ENV = "AUTORESEARCH_IMAGE"
"""Which image variant the task environments use: `cpu` (default) or `gpu`."""
SECRET_ENV = "AUTORESEARCH_LLM_SECRET"
"""`NAME[:ENV]` of a cluster secret holding the LLM API key, for `flyte run` (the CLI has `--llm-secret`)."""
SHIPPED = tuple(str(p.relative_to(trust.REPO)) for p in trust.shipped_files())
"""What every environment's code bundle holds besides what the submitter imported (`trust.shipped_files`)."""


DATA_SALT = trust.salt(trust.REPO / name for name in trust.CONTRACTS)
"""A hash of the code that builds and describes a bundle: editing it rebuilds the bundle, and nothing else does."""


def torch_package() -> str:
    """The torch pin of the dependency list (the image installs it first, from the variant's index)."""
    return next(p for p in RUNTIME_PACKAGES if p.startswith("torch"))


def image(variant: str) -> flyte.Image:
    """The cluster image: Debian, bubblewrap, torch first (CPU wheels for `cpu`), then the header's dependencies."""
    if variant not in TORCH_INDEX:
        raise ValueError(f"unknown image variant {variant!r}; choose one of {', '.join(TORCH_INDEX)}")
    rest = tuple(p for p in RUNTIME_PACKAGES if p != torch_package()) + IMAGE_ONLY_PACKAGES
    base = flyte.Image.from_debian_base(
        python_version=(3, 11), name=f"parallelized-autoresearch-{variant}", install_flyte=False
    )
    return (
        base.with_apt_packages(*APT_PACKAGES)
        .with_pip_packages(torch_package(), index_url=TORCH_INDEX[variant])
        .with_pip_packages(*rest)
    )


SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def parse_secret(spec: str) -> tuple[str, str]:
    """`NAME[:ENV]` -> (secret name, environment variable); ENV defaults to NAME upper-cased, `-` and `.` as `_`."""
    name, _, env = spec.strip().partition(":")
    env = env or re.sub(r"[-.]", "_", name).upper()
    if not SECRET_NAME.fullmatch(name) or not ENV_NAME.fullmatch(env):
        raise ValueError(
            f"--llm-secret {spec!r} is not NAME[:ENV]: NAME is a cluster secret ([A-Za-z0-9._-]), ENV the variable "
            "it becomes in the pod ([A-Za-z_][A-Za-z0-9_]*), e.g. openai-key:OPENAI_API_KEY"
        )
    return name, env


def llm_secret(spec: str) -> flyte.Secret | None:
    """The LLM API key secret for `NAME[:ENV]`, exposed to the driver as the environment variable ENV."""
    if not spec:
        return None
    name, env = parse_secret(spec)
    return flyte.Secret(key=name, as_env_var=env)


POD_POSTURES = ("nested", "unmasked")
"""Pod templates for experiment pods: `nested` (the SDK's nested-sandboxing grant) or `unmasked` (that, plus an
unmasked /proc in a user-namespaced pod, which bubblewrap needs to mount its own /proc)."""


def pod_template(posture: str = "nested") -> flyte.PodTemplate:
    """The experiment pod's security posture. `nested` adds CAP_SYS_ADMIN and unconfined AppArmor: enough for
    nested namespaces under the runtime's seccomp profile, but a pod's masked /proc still stops bubblewrap, which
    then falls back to `userns`. `unmasked` also asks for `procMount: Unmasked` and `hostUsers: false` (Kubernetes
    >= 1.30 with user namespaces), where bubblewrap works."""
    if posture == "nested":
        return flyte.PodTemplate().allow_nested_sandboxing()
    if posture != "unmasked":
        raise ValueError(f"unknown pod posture {posture!r}; choose one of {', '.join(POD_POSTURES)}")
    from kubernetes.client import V1Container, V1PodSpec, V1SecurityContext

    container = V1Container(name="primary", security_context=V1SecurityContext(proc_mount="Unmasked"))
    return flyte.PodTemplate(pod_spec=V1PodSpec(containers=[container], host_users=False)).allow_nested_sandboxing()


POSTURE_ENV = "AUTORESEARCH_POD_POSTURE"
"""Which pod template experiment pods get: `nested` (default) or `unmasked` (see `pod_template`)."""
VARIANT = os.environ.get(IMAGE_ENV) or "cpu"
POSTURE = os.environ.get(POSTURE_ENV) or "nested"
IMAGE = image(VARIANT)
EXPERIMENT_MEMORY = "1536Mi"
"""The experiment pod's default memory, request and limit: above what `autoresearch/lab/pods.py` gives the default
config (which sizes each call); a reusable pod keeps this size, and a call that needs more runs with reuse off."""

bundle_env = flyte.TaskEnvironment(
    name="autoresearch_bundle",
    image=IMAGE,
    include=SHIPPED,
    resources=flyte.Resources(cpu=2, memory=("4Gi", "4Gi")),
    description="Builds and profiles the tokenised data bundle.",
)
experiment_env = flyte.TaskEnvironment(
    name="autoresearch_experiment",
    image=IMAGE,
    include=SHIPPED,
    resources=flyte.Resources(
        cpu=1, memory=(EXPERIMENT_MEMORY, EXPERIMENT_MEMORY), gpu=1 if VARIANT == "gpu" else None
    ),
    pod_template=pod_template(POSTURE),
    description="Runs one sandboxed experiment; sizing overrides its resources per call.",
)
agent_env = flyte.TaskEnvironment(
    name="autoresearch_agent",
    image=IMAGE,
    include=SHIPPED,
    resources=flyte.Resources(cpu=2, memory=("4Gi", "4Gi")),
    secrets=llm_secret(os.environ.get(SECRET_ENV, "")),
    env_vars={IMAGE_ENV: VARIANT, POSTURE_ENV: POSTURE},  # the driver pod builds its experiments' specs
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
    # in a worker thread: downloads and tokenising must not block the event loop the task shares
    await asyncio.to_thread(prepare.prepare_bundle, dataset, num_shards, vocab_size, root, split_seed)
    with open(root / "builds.log", "a") as log:
        log.write(f"{time.time():.0f} built in {time.perf_counter() - start:.2f}s\n")
    return Bundle(
        data=await Dir.from_local(str(root / "data")),
        tokenizer=await Dir.from_local(str(root / "tokenizer")),
        root=str(root),
        split=split,
        digests=await asyncio.to_thread(prepare.held_out_digests, root / "data", root / "tokenizer"),
    )


@bundle_env.task(cache=flyte.Cache(behavior="auto", salt=DATA_SALT))
async def profile_bundle(bundle: Bundle) -> DatasetProfile:
    """The dataset profile of a built bundle: sizes per split and the tokenizer's shape."""
    return prepare.load_profile(await local_path(bundle.data))


DOWNLOADS = "downloads"
"""`<state dir>/downloads/`: where a pod puts the directories it downloads (never `/tmp`, which sandboxes share)."""


def download_dest(uri: str) -> Path:
    """Where a pod keeps its copy of `uri`: `<state dir>/downloads/<hash>-<name>`."""
    leaf = uri.rstrip("/").rsplit("/", 1)[-1]
    return prepare.state_dir() / DOWNLOADS / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-{leaf}"


async def local_path(d: Dir) -> str:
    """A local path for `d`: itself in local mode; in a pod, a download into the state dir (never `/tmp`), made
    once per pod (atomically: a finished download is renamed into place) and reused by its later tasks."""
    if Path(d.path).exists():
        return d.path
    dest = download_dest(d.path)
    if not dest.is_dir():
        # a file:// store (the pod emulation) is copied by the SDK, which needs the bare path for that
        source = Dir.from_existing_remote(d.path.removeprefix("file://")) if d.path.startswith("file://") else d
        await _download(source.download, dest)
    return str(dest)


async def local_file(uri: str) -> str:
    """A local path for the file at `uri`, as `local_path` gives one for a directory."""
    if Path(uri).is_file():
        return uri
    dest = download_dest(uri)
    if not dest.is_file():
        source = File.from_existing_remote(uri.removeprefix("file://"))
        if uri.startswith("file://"):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source.path, partial := dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial"))
            os.replace(partial, dest)
        else:
            await _download(source.download, dest)
    return str(dest)


async def _download(download: Any, dest: Path) -> None:
    """`download(local_path=...)` into a fresh sibling of `dest`, then renamed into place (a lost race is fine)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.partial")
    await download(local_path=str(partial))
    try:
        os.rename(partial, dest)
    except OSError:  # another task of this pod finished the same download first
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
