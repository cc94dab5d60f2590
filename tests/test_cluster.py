"""The cluster configuration, checked on the real objects: environments and images, pod settings per call, which
failures are final, endpoints and secrets refused before any work, threads fixed per key, the sandbox reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from importlib import metadata
from pathlib import Path

import flyte
import flyte.errors
import pytest
from packaging.requirements import Requirement

import bundle
import parallelized_autoresearch as app
from autoresearch.lab import pods, sizing
from autoresearch.report import html
from autoresearch.sandbox import backends, classify, trust
from autoresearch.session import inputs
from autoresearch_types import ExperimentConfig, ExperimentResult

ROOT = Path(__file__).resolve().parent.parent
ENVS = (bundle.bundle_env, bundle.experiment_env, bundle.agent_env)


def layers(image: flyte.Image) -> list:
    return list(image._layers)


def test_every_environment_ships_by_the_rule_and_sets_memory_limits() -> None:
    for env in ENVS:
        assert tuple(env.include) == bundle.SHIPPED
        memory = env.resources.memory
        assert isinstance(memory, tuple) and memory[0] == memory[1], f"{env.name}: a limit, not only a request"
    assert set(bundle.SHIPPED) == {str(p.relative_to(trust.REPO)) for p in trust.shipped_files()}
    assert set(trust.trusted_files()) <= set(trust.shipped_files()), "the trusted set is part of what ships"
    default = ExperimentConfig()
    assert pods.memory_of(bundle.experiment_env.resources) >= pods.pod_memory_mb(default)


def test_the_experiment_pod_template_grants_nested_sandboxing() -> None:
    template = bundle.experiment_env.pod_template
    primary = template.pod_spec.containers[0]
    assert "SYS_ADMIN" in primary.security_context.capabilities.add
    assert primary.security_context.allow_privilege_escalation is False
    assert template.annotations["container.apparmor.security.beta.kubernetes.io/primary"] == "unconfined"
    unmasked = bundle.pod_template("unmasked")
    assert unmasked.pod_spec.host_users is False
    assert unmasked.pod_spec.containers[0].security_context.proc_mount == "Unmasked"
    with pytest.raises(ValueError, match="nested, unmasked"):
        bundle.pod_template("privileged")


def test_the_cpu_image_installs_cpu_torch_first_then_the_one_dependency_list() -> None:
    from flyte._image import AptPackages, PipPackages

    pip = [layer for layer in layers(bundle.image("cpu")) if isinstance(layer, PipPackages)]
    assert pip[0].packages == (bundle.torch_package(),) and pip[0].index_url == bundle.TORCH_INDEX["cpu"]
    rest = set(pip[1].packages)
    assert rest == (set(bundle.RUNTIME_PACKAGES) - {bundle.torch_package()}) | set(bundle.IMAGE_ONLY_PACKAGES)
    assert any(
        isinstance(layer, AptPackages) and "bubblewrap" in layer.packages for layer in layers(bundle.image("cpu"))
    )
    gpu = [layer for layer in layers(bundle.image("gpu")) if isinstance(layer, PipPackages)]
    assert gpu[0].packages == (bundle.torch_package(),) and gpu[0].index_url is None, "PyPI's CUDA build"
    with pytest.raises(ValueError, match="cpu, gpu"):
        bundle.image("tpu")


def test_the_gpu_variant_and_the_unmasked_posture_are_chosen_at_submit_and_passed_to_the_driver() -> None:
    code = (
        "import bundle, json; r = bundle.experiment_env.resources; e = bundle.agent_env.env_vars; "
        "c = bundle.experiment_env.pod_template.pod_spec.containers[0].security_context; "
        "print(json.dumps([bundle.VARIANT, r.gpu, e[bundle.IMAGE_ENV], e[bundle.POSTURE_ENV], c.proc_mount]))"
    )
    env = {**os.environ, bundle.IMAGE_ENV: "gpu", bundle.POSTURE_ENV: "unmasked"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["gpu", 1, "gpu", "unmasked", "Unmasked"], out.stderr


def test_the_pins_resolve_beside_flytes_own_extras() -> None:
    ours = {Requirement(r).name: Requirement(r) for r in bundle.RUNTIME_PACKAGES}
    assert "pydantic-monty" not in ours, "flyte[sandbox] pins it; a second pin would conflict"
    assert "sandbox" in ours["flyte"].extras
    for line in metadata.requires("flyte") or []:
        req = Requirement(line)
        mine = ours.get(req.name)
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if mine is not None and pinned:
            assert mine.specifier.contains(pinned[0], prereleases=True), f"{mine} conflicts with flyte's {req}"
    for name, req in ours.items():
        assert req.specifier.contains(metadata.version(name), prereleases=True), f"installed {name} breaks {req}"


def test_the_environments_serialise_with_their_pod_settings() -> None:
    from flyte._internal.runtime.task_serde import translate_task_to_wire
    from flyte.models import CodeBundle, SerializationContext

    config = ExperimentConfig()
    task = app.run_experiment.target
    size = sizing.initial_size(config, sizing.SizingPolicy())
    settings = pods.PodSettings(retries=3, interruptible=True)
    called = task.override(**pods.overrides(task, config, size, settings, pods.short_name("Warmup + cosine", 2)))
    bundle_ref = CodeBundle(computed_version="v1", tgz="file:///bundle.tgz", destination=".")
    context = SerializationContext(
        version="v1", project="p", domain="d", org="o", code_bundle=bundle_ref, root_dir=ROOT
    )
    spec = translate_task_to_wire(called, context)
    meta = spec.task_template.metadata
    assert meta.retries.retries == 3 and meta.interruptible is True
    assert meta.timeout.seconds == int(
        timedelta(seconds=1.25 * config.time_budget_s + 60 + pods.STARTUP_S).total_seconds()
    )
    assert spec.short_name == "warmup-cosine-s2"
    container = spec.task_template.k8s_pod.pod_spec["containers"][0]
    limit = f"{pods.pod_memory_mb(config)}Mi"
    assert container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"] == limit
    assert "SYS_ADMIN" in container["securityContext"]["capabilities"]["add"]


def test_reuse_keeps_the_warm_pod_only_while_it_is_big_enough() -> None:
    task = app.run_experiment.target
    small, big = ExperimentConfig(), ExperimentConfig().with_overrides({"n_layer": 8, "n_embd": 512})
    settings = pods.PodSettings(reuse=4)
    warm = pods.overrides(task, small, sizing.initial_size(small, sizing.SizingPolicy()), settings, "a")
    assert isinstance(warm["reusable"], flyte.ReusePolicy) and "resources" not in warm
    task.override(**warm)  # the SDK accepts it: no resource override with reuse
    cold = pods.overrides(task, big, sizing.initial_size(big, sizing.SizingPolicy()), settings, "b")
    assert cold["reusable"] == "off" and pods.memory_of(cold["resources"]) > pods.memory_of(task.resources)
    retry = pods.overrides(task, small, sizing.initial_size(small, sizing.SizingPolicy()), settings, "a", attempt=1)
    assert retry["reusable"] == "off", "an OOM retry needs its own, bigger pod"
    assert pods.memory_of(retry["resources"]) == 2 * pods.pod_memory_mb(small)
    task.override(**retry)


def test_only_deterministic_failures_are_made_final() -> None:
    crash = classify.FAILURES["crash"](ExperimentResult(outcome="crash", message="boom"))
    final = pods.final(crash)
    assert isinstance(final, flyte.errors.NonRecoverableError) and final.code == type(crash).__name__
    assert classify.result_from_error(final).outcome == "crash", "the record still travels in the message"
    with pytest.raises(flyte.errors.OOMError) as oom:
        classify.raise_for_outcome(ExperimentResult(outcome="oom", message="too big"))
    final_oom = pods.final(oom.value)
    assert isinstance(final_oom, flyte.errors.NonRecoverableError) and final_oom.code == "OOMKilled"
    assert sizing._is_oom(final_oom), "the OOM ladder still sees an OOM"
    lost = ConnectionError("the object store went away")
    assert pods.final(lost) is lost, "an infrastructure failure stays retryable"


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080/v1",
        "http://127.0.0.1:8080/v1",
        "http://[::1]:8080",
        "http://0.0.0.0:1",
        "http://169.254.1.2",
    ],
)
def test_an_endpoint_on_this_machine_is_refused_for_a_cluster(url: str) -> None:
    with pytest.raises(inputs.InputError, match="cannot reach"):
        inputs.cluster_endpoint("--api-base", url)


def test_a_reachable_endpoint_and_secret_names_pass() -> None:
    assert inputs.cluster_endpoint("--api-base", "http://llm.models.svc:8080/v1")
    assert bundle.parse_secret("openai-key") == ("openai-key", "OPENAI_KEY")
    assert bundle.parse_secret("llm.key:OPENAI_API_KEY") == ("llm.key", "OPENAI_API_KEY")
    with pytest.raises(ValueError, match="NAME"):
        bundle.parse_secret("bad name!")
    secret = bundle.llm_secret("openai-key:OPENAI_API_KEY")
    assert secret.key == "openai-key" and secret.as_env_var == "OPENAI_API_KEY"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--api-base", "http://127.0.0.1:8080/v1"], "cannot reach"),
        (["--llm-secret", "bad name!"], "NAME[:ENV]"),
        (["--reuse", "100"], "--reuse"),
        (["--backend", "none"], "--allow-unsandboxed"),
    ],
)
def test_the_cli_refuses_a_cluster_run_before_any_work(
    flags: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    assert app.main(["--config", "/nonexistent/config.yaml", *flags]) == 2
    assert message in capsys.readouterr().err


def test_threads_are_the_keys_and_size_the_pod() -> None:
    config = ExperimentConfig().with_overrides({"threads": 2})
    size = sizing.initial_size(config, sizing.SizingPolicy(cpu=1))
    assert size.cpu == 2, "the key's threads, whatever the machine's policy"
    reply, _ = sizing.parse_llm_size('{"cpu": 8, "memory": "4Gi"}', size, sizing.SizingPolicy())
    assert reply.cpu == 2, "an LLM sizes memory, never threads"
    resources = pods.overrides(app.run_experiment.target, config, size, pods.PodSettings(), "t")["resources"]
    assert resources.cpu == 2 and pods.pod_memory_mb(config) > pods.pod_memory_mb(ExperimentConfig())


def test_the_summary_tab_names_the_backend_used_and_its_gaps() -> None:
    gaps = backends.missing_guarantees("userns")
    page = html.summary_html({"run": {"status": "done", "sandbox": {"userns": gaps}}})
    assert "<h3>Sandbox</h3>" in page and "userns" in page and "no PID namespace" in page


def test_flyte_runs_success_panel_is_a_short_summary() -> None:
    from autoresearch_types import AutoresearchOutput, DatasetProfile

    profile = DatasetProfile("shakespeare", 1, 512, 1, 1, 1, 1, 4.0)
    source = (ROOT / "train.py").read_text()
    out = AutoresearchOutput(
        memory_key="k1", model="builtin", directive="d" * 5000, profile=profile, best={"title": "LR up", "val_bpb": 2.5},
        leaderboard=[{"title": "LR up"}] * 50, summary="LR up beats the baseline.\nmore", totals={},
        best_train_py=source, saved=["/state/results/k1/best_train.py"],
    )  # fmt: skip
    text = str(out)
    assert len(text.splitlines()) <= 6 and "def run_training" not in text and "d" * 100 not in text
    assert "best: LR up (val_bpb 2.5000)" in text and "saved: /state/results/k1/best_train.py" in text
    assert "--memory-key k1" in text and "--memory_key k1" in text
