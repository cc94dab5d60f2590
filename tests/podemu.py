"""Pod emulation: the entry point a Flyte pod runs (`a0`), over the real code bundle tarball, with nothing else.

What a cluster does for one action, done here with the SDK's own pieces and no backend:
1. the submitter's side: Flyte's bundler builds the code bundle tarball (in a fresh interpreter that imported only
   the task module, as `flyte run` does), the task is serialised to its wire spec (what `flyte deploy` registers),
   and the inputs are written as `inputs.pb` into a `file://` object store;
2. the pod: `a0` with the spec's own arguments (the backend's `{{.templates}}` filled in) runs in an empty working
   directory with its own HOME, inside a container view (bubblewrap) where the repository is hidden, the
   virtualenv's editable install is blanked, `/tmp` is private and `/proc` is masked as Kubernetes masks it;
   optionally in a memory cgroup with the pod's limit read from the spec;
3. the outputs (`outputs.pb`) or the error document (`error.pb`, with its recoverability) are read back.

Postures of the container: `vanilla` (the runtime's default capabilities, masked /proc: a default pod), `nested`
(plus CAP_SYS_ADMIN: `PodTemplate.allow_nested_sandboxing()` on a default cluster), `unmasked` (plus an unmasked
/proc: the `unmasked` pod template on a cluster with user-namespaced pods).

Not covered (only a real cluster shows them): the image build, pulling the bundle with the pod's identity, the
control plane's own `inputs.pb` and template values, cache lookups, retries and their backoff, timeouts,
preemption, pod admission of the template, secrets injection, reusable pods, the driver's sub-actions through the
remote controller, cgroup v2's `memory.oom.group`, and real object-store semantics.

As a script: `python tests/podemu.py` runs `run_experiment` in each posture and compares it with a local run;
`python tests/podemu.py --config .flyte/config.yaml` runs the same experiment on a real cluster instead.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memcg import MemoryCgroup

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


POSTURES = ("vanilla", "nested", "unmasked")
EXPECTED_BACKEND = {"vanilla": "userns", "nested": "userns", "unmasked": "bubblewrap"}
"""The sandbox backend each posture leaves working (a masked /proc stops bubblewrap, with or without SYS_ADMIN)."""
DEFAULT_CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
]
"""The capabilities a container runtime gives a container by default (no SYS_ADMIN)."""
MASKED = ("/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/sched_debug")
MASKED_DIRS = ("/proc/acpi", "/proc/scsi", "/sys/firmware")
READ_ONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
"""Kubernetes' default masked and read-only /proc paths (`procMount: Default`)."""
TINY = {
    "n_layer": 1,
    "n_head": 2,
    "n_embd": 32,
    "seq_len": 32,
    "batch_size": 4,
    "token_budget": 32 * 4 * 20,
    "eval_tokens": 2048,
    "vocab_size": 512,
    "time_budget_s": 120,
    "seed": 0,
}
"""A config that trains in seconds: the emulation proves the path, not the model."""


def venv() -> Path:
    """The virtualenv running this interpreter: the pod's "image"."""
    return Path(sys.prefix)


def editable_hooks() -> list[Path]:
    """The virtualenv's editable-install hooks for this project: a real image has none, so the pod blanks them."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    return sorted(site.glob("__editable__*parallelized_autoresearch*"))


def uri(path: Path) -> str:
    return "file://" + str(path.resolve())


# ---------------------------------------------------------------- the submitter's side

SHIP = """
import asyncio, json, sys
from pathlib import Path
root, style, out, module = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
sys.path.insert(0, str(root))
import importlib
mod = importlib.import_module(module)
from flyte._code_bundle import build_code_bundle
from flyte._code_bundle._includes import collect_env_include_files
from flyte._deploy import plan_deploy
task = getattr(mod, sys.argv[5])
task = getattr(task, "target", task)
envs = list(plan_deploy(task.parent_env())[0].envs.values())
include = collect_env_include_files(envs)
cb = asyncio.run(build_code_bundle(from_dir=root, dryrun=True, copy_bundle_to=out, copy_style=style,
                                   additional_files=include))
print(json.dumps({"tgz": str(cb.tgz), "version": cb.computed_version,
                  "files": sorted(str(Path(f).resolve().relative_to(root)) for f in cb.files)}))
"""
"""Run in a fresh interpreter that imports only the task module, as `flyte run FILE TASK` does: Flyte's
`loaded_modules` style ships what that process imported, plus every environment's `include`."""


@dataclass
class Shipment:
    """A built code bundle: its tarball in the store, its version (digest) and the files it holds."""

    tgz: Path
    version: str
    files: list[str]


def ship(store: Path, copy_style: str = "loaded_modules", task: str = "run_experiment") -> Shipment:
    """Flyte's own bundler, offline (`dryrun`), into `<store>/bundles`, from a fresh interpreter."""
    out = store / "bundles" / copy_style
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-c", SHIP, str(REPO), copy_style, str(out), "parallelized_autoresearch", task],
        capture_output=True,
        text=True,
        cwd=store,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=300,
    )
    if proc.returncode:
        raise RuntimeError(f"bundling failed: {proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Shipment(Path(data["tgz"]), data["version"], data["files"])


def unpack(shipment: Shipment, dest: Path) -> Path:
    """The tarball extracted into an empty folder (what `a0 --tgz ... --dest .` does in a pod)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(shipment.tgz) as tar:
        tar.extractall(dest, filter="data")
    return dest


def code_bundle(shipment: Shipment) -> Any:
    """The SDK's `CodeBundle` for a shipment (what the submitter records in the task spec)."""
    from flyte.models import CodeBundle

    return CodeBundle(computed_version=shipment.version, tgz=uri(shipment.tgz), destination=".")


def task_spec(task: Any, shipment: Shipment, project: str = "p", domain: str = "d", org: str = "o") -> Any:
    """The task's wire `TaskSpec`, as `flyte deploy` registers it."""
    from flyte._internal.runtime.task_serde import translate_task_to_wire
    from flyte.models import SerializationContext

    task = getattr(task, "target", task)
    context = SerializationContext(
        version=shipment.version,
        project=project,
        domain=domain,
        org=org,
        code_bundle=code_bundle(shipment),
        root_dir=REPO,
    )
    return translate_task_to_wire(task, context)


def primary_container(spec: Any) -> dict[str, Any]:
    """The primary container of a spec (from its pod template when it has one): args, env and resources."""
    from google.protobuf.json_format import MessageToDict

    template = spec.task_template
    if template.HasField("k8s_pod"):
        pod = MessageToDict(template.k8s_pod)
        return next(c for c in pod["podSpec"]["containers"] if c["name"] == "primary")
    container = MessageToDict(template.container)
    return {"args": container.get("args", []), "env": container.get("env", []), "resources": {}}


def memory_limit_mb(spec: Any) -> int | None:
    """The pod's memory limit in MiB, as the spec asks for it (None when it sets none)."""
    limit = primary_container(spec).get("resources", {}).get("limits", {}).get("memory")
    if not limit:
        return None
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for unit, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if limit.endswith(unit):
            return int(float(limit[: -len(unit)]) * factor)
    return int(int(limit) / 2**20)


# ---------------------------------------------------------------- the pod


@dataclass
class Pod:
    """One emulated action pod: its object store, its own folders and the names the backend would give it."""

    store: Path
    root: Path
    run_name: str = field(default_factory=lambda: "r" + uuid.uuid4().hex[:10])
    action: str = "a0"

    @property
    def workdir(self) -> Path:
        return self.root / "cwd"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def state_dir(self) -> Path:
        """Where the project keeps its state in this pod: HOME's default, as in an image with no settings."""
        return self.home / ".cache" / "parallelized-autoresearch"

    def at(self, rel: str) -> str:
        return uri(self.store / rel)

    @property
    def action_rel(self) -> str:
        return f"runs/{self.run_name}/{self.action}"

    def templates(self) -> dict[str, str]:
        """What the backend fills into the container's `{{.x}}` arguments."""
        return {
            "{{.input}}": self.at(f"{self.action_rel}/inputs.pb"),
            "{{.outputPrefix}}": self.at(f"{self.action_rel}/out"),
            "{{.rawOutputDataPrefix}}": self.at(f"rd/{self.run_name}-{self.action}"),
            "{{.checkpointOutputPrefix}}": self.at(f"ckpt/{self.run_name}/{self.action}"),
            "{{.prevCheckpointPrefix}}": "",
            "{{.runName}}": self.run_name,
            "{{.actionName}}": self.action,
            "{{.runStartTime}}": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def argv(self, spec: Any) -> list[str]:
        """The container's arguments with the templates filled in; `a0` resolved in the image's PATH."""
        args = []
        for arg in primary_container(spec)["args"]:
            for key, value in self.templates().items():
                arg = arg.replace(key, value)
            args.append(arg)
        if args[0] != "a0":
            raise ValueError(f"not a Flyte runtime container: {args[:3]}")
        return [str(venv() / "bin" / "a0"), *args[1:]]

    def env(self, spec: Any, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The pod's environment: the spec's variables and what the backend injects; nothing from this process."""
        env = {e.get("name", e.get("key")): e.get("value", "") for e in primary_container(spec).get("env", [])}
        env.update(
            PATH=f"{venv()}/bin:/usr/local/bin:/usr/bin:/bin",
            HOME=str(self.home),
            LANG="C.UTF-8",
            ACTION_NAME=self.action,
            RUN_NAME=self.run_name,
            FLYTE_INTERNAL_EXECUTION_PROJECT="p",
            FLYTE_INTERNAL_EXECUTION_DOMAIN="d",
            _U_ORG_NAME="o",
            _U_RUN_BASE=self.at(f"runs/{self.run_name}"),
        )
        return {**env, **(extra or {})}

    def prepare(self) -> None:
        """Empty working directory and HOME; the output prefixes a `file://` store needs created in advance."""
        if self.root.exists():
            shutil.rmtree(self.root)
        for path in (self.workdir, self.home):
            path.mkdir(parents=True)
        for rel in (f"{self.action_rel}/out", f"rd/{self.run_name}-{self.action}", f"ckpt/{self.run_name}"):
            (self.store / rel).mkdir(parents=True, exist_ok=True)


async def write_inputs(task: Any, pod: Pod, **inputs: Any) -> None:
    """`inputs.pb`, as the backend writes it for the action."""
    from flyte._internal.runtime.convert import convert_from_native_to_inputs
    from flyte._internal.runtime.io import upload_inputs

    task = getattr(task, "target", task)
    (pod.store / pod.action_rel).mkdir(parents=True, exist_ok=True)
    await upload_inputs(
        await convert_from_native_to_inputs(task.native_interface, **inputs), pod.at(f"{pod.action_rel}/inputs.pb")
    )


def container(pod: Pod, posture: str, read_only: tuple[Path, ...] = ()) -> list[str]:
    """The outer container (bubblewrap as root, no user namespace): host system read-only, the repository hidden,
    only the virtualenv and the pod's own folders visible, private /tmp, the posture's capabilities and /proc (the
    host's, masked as Kubernetes masks a pod's unless the posture is `unmasked`). It shares the host's PID
    namespace: a fresh procfs there would stop nested sandboxes for a reason no pod has."""
    if posture not in POSTURES:
        raise ValueError(f"unknown posture {posture!r}; choose one of {POSTURES}")
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--bind", "/proc", "/proc"]
    args += ["--tmpfs", "/tmp", "--tmpfs", "/dev/shm", "--tmpfs", str(REPO)]
    if posture != "unmasked":
        args += [a for p in MASKED if Path(p).exists() for a in ("--ro-bind", "/dev/null", p)]
        args += [a for p in MASKED_DIRS if Path(p).is_dir() for a in ("--tmpfs", p)]
        args += [a for p in READ_ONLY if Path(p).exists() for a in ("--ro-bind", p, p)]
    args += ["--ro-bind", str(venv()), str(venv())]
    args += [a for hook in editable_hooks() for a in ("--ro-bind", "/dev/null", str(hook))]
    args += [a for p in read_only for a in ("--ro-bind", str(p), str(p))]
    args += [a for p in (pod.store, pod.workdir, pod.home) for a in ("--bind", str(p), str(p))]
    args += ["--cap-drop", "ALL"] + [a for cap in DEFAULT_CAPS for a in ("--cap-add", f"CAP_{cap}")]
    if posture != "vanilla":
        args += ["--cap-add", "CAP_SYS_ADMIN"]
    return args + ["--chdir", str(pod.workdir), "--die-with-parent", "--"]


@functools.cache
def container_problem() -> str | None:
    """Why the pod's container cannot be built here (it needs bubblewrap, run as root with the mounts it makes),
    or None: probed by building one around `true`."""
    if shutil.which("bwrap") is None or os.geteuid() != 0:
        return "the pod's container is built with bubblewrap, as root"
    root = Path(os.environ.get("AUTORESEARCH_STATE_DIR") or Path.home() / ".cache") / f"podemu-probe-{os.getpid()}"
    probe = Pod(root / "store", root)
    probe.prepare()
    probe.store.mkdir(exist_ok=True)
    done = subprocess.run([*container(probe, "vanilla"), "true"], capture_output=True, text=True, timeout=60)
    shutil.rmtree(probe.root, ignore_errors=True)
    return None if done.returncode == 0 else f"bwrap cannot build the pod's container here: {done.stderr.strip()}"


# ---------------------------------------------------------------- running and reading back


@dataclass
class PodRun:
    """What one emulated pod did: exit code, wall time, logs, memory, and its outputs or error document."""

    rc: int
    wall_s: float
    stdout: str
    stderr: str
    outputs: Any = None
    error: Any = None
    recoverable: bool | None = None
    peak_mb: float | None = None
    limit_mb: int | None = None
    oom_kills: int = 0


def run_pod(
    pod: Pod,
    spec: Any,
    posture: str = "vanilla",
    read_only: tuple[Path, ...] = (),
    memory_limit: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 600,
) -> PodRun:
    """Run `a0` as the pod, in its container (and memory cgroup when `memory_limit` is given); read back."""
    pod.prepare()
    cmd = container(pod, posture, read_only) + pod.argv(spec)
    cgroup = MemoryCgroup(memory_limit) if memory_limit else None
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=pod.workdir,
            env=pod.env(spec, extra_env),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=cgroup.join if cgroup else None,
        )
        wall = time.perf_counter() - start
        peak, kills = (cgroup.peak_mb(), cgroup.oom_kills()) if cgroup else (None, 0)
    finally:
        if cgroup:
            cgroup.close()
    run = PodRun(proc.returncode, wall, proc.stdout, proc.stderr, peak_mb=peak, limit_mb=memory_limit, oom_kills=kills)
    asyncio.run(read_back(pod, spec, run))
    return run


async def read_back(pod: Pod, spec: Any, run: PodRun) -> None:
    """`outputs.pb` as native outputs, or `error.pb` as the SDK's error (and whether it may be retried)."""
    from flyte._internal.runtime.io import load_error, load_outputs

    out = pod.store / pod.action_rel / "out"
    if (out / "outputs.pb").exists():
        run.outputs = await load_outputs(uri(out / "outputs.pb"))
    if (out / "error.pb").exists():
        run.error = await load_error(uri(out / "error.pb"))
        run.recoverable = error_recoverable(out / "error.pb")


def error_recoverable(path: Path) -> bool:
    """Whether the backend may retry the action, from the error document's kind."""
    from flyteidl2.core import execution_pb2

    document = execution_pb2.ErrorDocument()
    document.ParseFromString(path.read_bytes())
    return document.error.kind == execution_pb2.ContainerError.RECOVERABLE


async def native_outputs(task: Any, run: PodRun) -> Any:
    """The task's native result from a successful run's outputs."""
    from flyte._internal.runtime.convert import convert_outputs_to_native

    task = getattr(task, "target", task)
    return await convert_outputs_to_native(task.native_interface, run.outputs)


def store_side(store: Path, root: Path, shipment: Shipment, read_only: tuple[Path, ...] = ()) -> Any:
    """The store commands of the emulated cluster: each one a `store_command` pod over the `file://` store (what
    `move` and `--config` run on a real cluster). A `data` folder must be under `read_only`."""
    from flyte.io import Dir

    from autoresearch.session import commands

    spec = task_spec(commands.store_command, shipment)

    def run(command: str, values: dict[str, Any]) -> dict[str, Any]:
        if "data" in values:
            values = {**values, "data": Dir.from_existing_remote(uri(Path(values["data"])))}
        pod = Pod(store, root / f"store-{command}-{uuid.uuid4().hex[:6]}")
        asyncio.run(write_inputs(commands.store_command, pod, command=command, **values))
        done = run_pod(pod, spec, "vanilla", read_only=read_only)
        if done.outputs is None:
            raise RuntimeError(f"store pod {command} failed: {done.error}\n{done.stderr[-2000:]}")
        answer = json.loads(asyncio.run(native_outputs(commands.store_command, done)))
        if "error" in answer:
            raise commands.BadInput(answer["error"])
        return answer["data"]

    return run


# ---------------------------------------------------------------- as a script


def tiny_data(state: Path) -> Path:
    """A tiny real data bundle (512-token vocabulary), built once under the state dir."""
    import prepare

    root = state / "tiny-bundle"
    if not (root / "data" / "profile.json").exists():
        prepare.prepare_bundle("shakespeare", 1, 512, root)
    return root


def experiment_inputs(data: Path, config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A real `run_experiment` input: the baseline `train.py`, the config, the data bundle as `file://` Dirs."""
    from flyte.io import Dir

    import bundle
    import prepare

    data_dirs = bundle.Bundle(
        data=Dir.from_existing_remote(uri(data / "data")),
        tokenizer=Dir.from_existing_remote(uri(data / "tokenizer")),
        root=uri(data),
        digests=prepare.bundle_digests(data),
    )
    return {"train_py": (REPO / "train.py").read_text(), "config": config, "data": data_dirs, **extra}


def local_data(data: Path) -> Any:
    """The same bundle as plain local Dirs, for a local run."""
    from flyte.io import Dir

    import bundle
    import prepare

    where = (Dir(path=str(data / "data")), Dir(path=str(data / "tokenizer")), str(data))
    return bundle.Bundle(*where, digests=prepare.bundle_digests(data))


@dataclass
class Emulation:
    """An object store with the code bundle in it and a data bundle beside it: where pods run."""

    store: Path
    root: Path
    shipment: Shipment
    data: Path

    @classmethod
    def create(cls, root: Path, data: Path) -> Emulation:
        store = root / "store"
        store.mkdir(parents=True, exist_ok=True)
        return cls(store, root, ship(store), data)


def experiment_pod(emu: Emulation, name: str, config: Any, posture: str = "vanilla", limit: int | None = 0) -> dict:
    """`run_experiment` in a pod, sized and configured as the driver calls it on a cluster, in a memory cgroup at
    the pod's own limit (`limit` 0; None: no cgroup; else that many MiB): what it did."""
    import parallelized_autoresearch as app
    from autoresearch.lab import pods, sizing

    size = sizing.initial_size(config, sizing.SizingPolicy())
    task = app.run_experiment.target
    task = task.override(**pods.overrides(task, config, size, pods.PodSettings(), name))
    spec = task_spec(task, emu.shipment)
    pod = Pod(emu.store, emu.root / name)
    asyncio.run(write_inputs(task, pod, **experiment_inputs(emu.data, config.to_dict(), memory_mb=size.memory_mb)))
    cgroup = memory_limit_mb(spec) if limit == 0 else limit
    run = run_pod(pod, spec, posture, read_only=(emu.data,), memory_limit=cgroup)
    result = asyncio.run(native_outputs(task, run)) if run.outputs else None
    return {
        "rc": run.rc,
        "wall_s": run.wall_s,
        "peak_mb": run.peak_mb,
        "limit_mb": memory_limit_mb(spec),
        "oom_kills": run.oom_kills,
        "result": result,
        "error": run.error,
    }


def emulate(args: argparse.Namespace) -> dict[str, Any]:
    """`run_experiment` in each posture, against a local run of the same config: the script's figures."""
    import flyte

    import parallelized_autoresearch as app
    import prepare
    from autoresearch_types import ExperimentConfig

    state = prepare.state_dir()
    emu = Emulation.create(state / "podemu", tiny_data(state))
    flyte.init(org="local", project="podemu", domain="development")
    config = ExperimentConfig().with_overrides(TINY)
    inputs = experiment_inputs(emu.data, config.to_dict()) | {"data": local_data(emu.data)}
    figures: dict[str, Any] = {"local_val_bpb": flyte.run(app.run_experiment.target, **inputs).outputs()[0].val_bpb}
    cgroup = MemoryCgroup.available() is None
    for posture in args.posture or POSTURES:
        done = experiment_pod(emu, posture, config, posture, (args.memory_limit or 0) if cgroup else None)
        result = done.pop("result")
        figures[posture] = {
            **done,
            "error": str(done["error"])[:300] if done["error"] else None,
            "backend": result.resources.get("backend") if result else None,
            "expected_backend": EXPECTED_BACKEND[posture],
            "val_bpb": result.val_bpb if result else None,
        }
    return figures


def on_cluster(args: argparse.Namespace) -> dict[str, Any]:
    """The same experiment on a real cluster: the bundle built there, the experiment run there, and the local run
    of the same config on the same inputs, side by side."""
    import flyte

    import bundle
    import parallelized_autoresearch as app
    import prepare
    from autoresearch_types import ExperimentConfig

    config = ExperimentConfig().with_overrides(TINY).to_dict()
    flyte.init_from_config(args.config, root_dir=REPO)
    built = flyte.run(bundle.build_bundle, dataset="shakespeare", num_shards=1, vocab_size=512)
    built.wait()
    train_py = (REPO / "train.py").read_text()
    remote = flyte.run(app.run_experiment.target, train_py=train_py, config=config, data=built.outputs()[0])
    remote.wait()
    result = remote.outputs()[0]
    flyte.init(org="local", project="podemu", domain="development")
    data = local_data(tiny_data(prepare.state_dir()))
    local = flyte.run(app.run_experiment.target, train_py=train_py, config=config, data=data).outputs()[0]
    return {
        "run": remote.url,
        "backend": result.resources.get("backend"),
        "val_bpb": result.val_bpb,
        "local_val_bpb": local.val_bpb,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posture", action="append", choices=POSTURES, help="container posture (default: all)")
    parser.add_argument("--memory-limit", type=int, default=0, help="memory cgroup limit in MiB (default: the spec's)")
    parser.add_argument("--config", default="", help="a Flyte config: run on that cluster instead of emulating")
    parser.add_argument("--json", default="", help="write the figures here")
    args = parser.parse_args(argv)
    figures = on_cluster(args) if args.config else emulate(args)
    text = json.dumps(figures, indent=1, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
