"""GPU experiments, tested on the CPU where they can be: the launcher's device binds, the memory policy, the sizing
arithmetic and ladder, packing, the CLI's refusal, and a real sandbox run that asks for a GPU on a machine without
one. What only a GPU shows is measured by `benchmarks/bench_gpu.py`."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from pathlib import Path

import pytest

import parallelized_autoresearch as pa
import prepare
from autoresearch.lab import placement, sizing
from autoresearch.sandbox import backends, gpu
from autoresearch.sandbox import bwrap as sandbox_bwrap
from autoresearch.sandbox import experiment as sandbox
from autoresearch.sandbox import pool as sandbox_pool
from autoresearch.sandbox.classify import classify_exit
from autoresearch_types import ExperimentConfig

PYTHON = "/usr/bin/python3"
LDCONFIG = """\
1234 libs found in cache `/etc/ld.so.cache'
\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1
\tlibnvidia-ml.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1
\tlibnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => /opt/nvidia/lib/libnvidia-ptxjitcompiler.so.1
\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6
"""


def dev_binds(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind"]


def test_a_gpu_run_binds_its_nvidia_nodes_and_a_cpu_run_none(tmp_path: Path) -> None:
    for name in ("nvidiactl", "nvidia-uvm", "nvidia0", "nvidia3", "nvidia-caps", "sda", "null", "kvm", "nvidia-uvmx"):
        (tmp_path / name).touch()
    nodes = gpu.device_nodes(tmp_path)
    assert [Path(n).name for n in nodes] == ["nvidia-uvm", "nvidia0", "nvidia3", "nvidiactl"]
    assert gpu.device_nodes(tmp_path / "absent") == []
    host = ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0"]
    with_gpu = sandbox_bwrap.bwrap_argv("/usr/bin/bwrap", Path("/w"), [], {}, [PYTHON, "x.py"], (), host)
    assert dev_binds(with_gpu) == host, "exactly the nodes asked for, nothing else of the host's /dev"
    assert with_gpu.index("--dev") < with_gpu.index("--dev-bind"), "bound over the minimal /dev, not instead of it"
    cpu = sandbox_bwrap.bwrap_argv("/usr/bin/bwrap", Path("/w"), [], {}, [PYTHON, "x.py"])
    assert dev_binds(cpu) == [] and "--dev-bind" not in cpu
    with pytest.raises(ValueError, match="not a node directly under /dev"):
        sandbox_bwrap.bwrap_argv("/usr/bin/bwrap", Path("/w"), [], {}, [PYTHON, "x.py"], (), ["/dev/../etc"])


def test_the_driver_libraries_come_from_the_read_only_system() -> None:
    assert gpu.driver_library_dirs(LDCONFIG) == ["/opt/nvidia/lib", "/usr/lib/x86_64-linux-gnu"]
    assert gpu.driver_library_dirs("") == []


def test_a_cpu_run_is_told_of_no_device_and_a_gpu_run_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    python = sandbox_pool.python_for_sandbox()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    cpu = sandbox_pool.sandbox_env(1, Path("/w"), "t", python)
    on_gpu = sandbox_pool.sandbox_env(1, Path("/w"), "t", python, gpu=True)
    assert cpu["CUDA_VISIBLE_DEVICES"] == "" and on_gpu["CUDA_VISIBLE_DEVICES"] == "2"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert "CUDA_VISIBLE_DEVICES" not in sandbox_pool.sandbox_env(1, Path("/w"), "t", python, gpu=True)


def test_a_gpu_run_has_no_address_space_limit_and_a_cpu_run_keeps_its_belt() -> None:
    assert sandbox_pool.address_space_mb(3072, gpu=True) == 0, "CUDA fails under RLIMIT_AS"
    cuda_here = Path("/dev/nvidiactl").exists()
    assert sandbox_pool.address_space_mb(3072) in ((0, 3072) if cuda_here else (3072,))
    spec = sandbox.SandboxSpec("", ExperimentConfig(), "d", "t", gpu_memory_mb=2000)
    job = sandbox.phase_job("train", spec, ExperimentConfig(), 60.0)
    assert job["memory_mb"] == 0 and job["gpu_memory_mb"] == 2000
    assert [k.gpu for k in sandbox.launch_keys(spec)] == [True]
    assert [k.gpu for k in sandbox.launch_keys(dataclasses.replace(spec, gpu_memory_mb=0))] == [False]


def test_gpu_memory_is_estimated_from_the_config_and_several_small_runs_share_a_gpu() -> None:
    default = gpu.estimate_gpu_memory_mb(gpu.shape_of(ExperimentConfig()))
    bigger = gpu.estimate_gpu_memory_mb(gpu.shape_of(ExperimentConfig().with_overrides({"n_layer": 8})))
    assert gpu.CONTEXT_MB < default < bigger, (default, bigger)
    assert gpu.pack_count(default, 81_559, cpus=16) >= 4, "the default config packs at least 4 on an H100"
    assert gpu.pack_count(default, 81_559, cpus=2) == 2, "never more than the cores that feed them"
    assert gpu.pack_count(100_000, 81_559, cpus=16) == 1, "one that does not fit still runs alone (and may OOM)"
    assert gpu.memory_fraction(8_000, 80_000) == pytest.approx(0.1) and gpu.memory_fraction(90_000, 80_000) == 1.0
    with pytest.raises(ValueError):
        gpu.memory_fraction(1, 0)


def test_a_cuda_out_of_memory_climbs_the_ladder_on_the_device() -> None:
    stderr = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)"
    assert classify_exit(1, stderr, False) is not None and classify_exit(1, stderr, False)[0] == "oom"
    policy = sizing.SizingPolicy(ceiling_mb=4096, gpu_device_mb=10_000)
    first = sizing.initial_size(ExperimentConfig(), policy)
    assert first.gpu_memory_mb == gpu.estimate_gpu_memory_mb(gpu.shape_of(ExperimentConfig()))
    sizes = [first]
    while (bigger := sizing.next_size(sizes[-1], policy)) is not None:
        sizes.append(bigger)
    device = [s.gpu_memory_mb for s in sizes]
    assert device == sorted(device) and device[-1] == 10_000 and len(set(device)) == len(device)
    assert sizes[-1].memory_mb == 4096, "the host side climbs too, to its own ceiling"
    cpu_only = sizing.initial_size(ExperimentConfig(), sizing.SizingPolicy())
    assert (
        cpu_only.gpu_memory_mb == 0
        and (sizing.next_size(cpu_only, sizing.SizingPolicy()) or cpu_only).gpu_memory_mb == 0
    )


def test_placement_packs_locally_and_gives_each_pod_one_gpu_on_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = placement.place(False, True, 3, ExperimentConfig())
    assert cpu == placement.Placement(None, 3)
    monkeypatch.setenv(placement.GPU_MEMORY_ENV, "40000")
    cluster = placement.place(True, False, 0, ExperimentConfig())
    assert cluster.concurrency == 1 and cluster.policy is not None and cluster.policy.gpu_device_mb == 40000
    local = placement.place(True, True, 0, ExperimentConfig(), device=81_559)
    need = gpu.estimate_gpu_memory_mb(gpu.shape_of(ExperimentConfig()))
    assert local.concurrency == gpu.pack_count(need, 81_559, os.cpu_count() or 1)
    assert placement.place(True, True, 2, ExperimentConfig(), device=81_559).concurrency == 2, "a given one wins"
    if gpu.device_memory_mb() is None:
        with pytest.raises(placement.NoGpu, match="needs an NVIDIA GPU"):
            placement.place(True, True, 0, ExperimentConfig())
    assert gpu.device_memory_mb("81559\n81559\n") == 81559 and gpu.device_memory_mb("") is None


@pytest.mark.skipif(gpu.device_memory_mb() is not None, reason="this machine has a GPU")
def test_the_cli_refuses_gpu_without_one_before_any_work(capsys: pytest.CaptureFixture, state_root: Path) -> None:
    state = state_root / "gpu-cli" / uuid.uuid4().hex[:8]
    assert pa.main(["--gpu", "--n-experiments", "1", "--state-dir", str(state)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --gpu needs an NVIDIA GPU") and len(err.strip().splitlines()) == 1, err
    assert not (state / "results").exists() and not (state / "flyte").exists(), "refused before any work"


@pytest.mark.skipif(gpu.device_memory_mb() is not None, reason="this machine has a GPU")
@pytest.mark.timeout(900)
def test_a_gpu_run_without_a_device_fails_in_its_sandbox_and_never_falls_back(tiny_bundle: Path) -> None:
    """The whole path (the launch key, the device binds, the harness's cap before the edited code) in the real
    sandbox: with no GPU the run fails with the reason instead of quietly training on the CPU."""
    config = ExperimentConfig().with_overrides({"n_layer": 1, "n_head": 2, "n_embd": 32, "seq_len": 32})
    config = config.with_overrides({"batch_size": 4, "max_steps": 2, "eval_tokens": 2048, "vocab_size": 512})
    where = (str(tiny_bundle / "data"), str(tiny_bundle / "tokenizer"))
    spec = sandbox.SandboxSpec(
        (Path(__file__).resolve().parent.parent / "train.py").read_text(),
        config,
        *where,
        backend=backends.default_backend(),
        deadline_s=600,
        digests=prepare.bundle_digests(tiny_bundle),
        gpu_memory_mb=1000,
    )
    result = asyncio.run(sandbox.run_sandboxed(spec))
    assert result.outcome == "crash" and result.val_bpb is None, (result.outcome, result.message)
    assert "found no CUDA device" in result.message + result.stderr_tail, result.message


def test_the_llm_sizer_sees_the_gpu_numbers_and_may_only_raise_them_within_the_device() -> None:
    policy = sizing.SizingPolicy(ceiling_mb=8192, gpu_device_mb=20_000)
    floor = sizing.initial_size(ExperimentConfig(), policy)
    prompt = sizing.sizing_prompt("run_experiment", "doc", {"config": {}}, floor, policy)
    assert "GPU of 20000Mi" in prompt and f"estimated device memory {floor.gpu_memory_mb}Mi" in prompt
    raised, problem = sizing.parse_llm_size('{"cpu": 1, "memory": "2Gi", "gpu_memory": "12Gi"}', floor, policy)
    assert problem == "" and raised.gpu_memory_mb == 12 * 1024
    capped, _ = sizing.parse_llm_size('{"cpu": 1, "memory": "2Gi", "gpu_memory": "999Gi"}', floor, policy)
    lowered, _ = sizing.parse_llm_size('{"cpu": 1, "memory": "2Gi", "gpu_memory": "1Mi"}', floor, policy)
    assert capped.gpu_memory_mb == 20_000 and lowered.gpu_memory_mb == floor.gpu_memory_mb
    cpu_floor = sizing.initial_size(ExperimentConfig(), sizing.SizingPolicy())
    assert "GPU" not in sizing.sizing_prompt("run_experiment", "doc", {}, cpu_floor, sizing.SizingPolicy())
