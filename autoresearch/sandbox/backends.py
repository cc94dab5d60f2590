"""Which isolation backend runs an experiment, and what each one cannot guarantee (TRUSTED).

`bubblewrap` is our own `bwrap` launcher (`bwrap.py`: PID, mount, network, IPC and user namespaces, only the system
parts a run needs and the sandbox's Python view, read-only, private `/tmp`); `userns` is `unionai-sandbox`'s (no PID
namespace, the host's `/usr`, `/etc` readable and `/tmp` shared); each gets a cgroup where the host allows one;
`none` isolates nothing and needs an explicit opt-in. `default_backend` is the strongest one that works here.
"""

from __future__ import annotations

import functools
import sys
import warnings

from autoresearch.sandbox import bwrap as sandbox_bwrap
from autoresearch.sandbox import cgroups
from autoresearch.sandbox.pool import userns_problem

BACKENDS = ("userns", "bubblewrap", "none")


@functools.cache
def _bwrap_works() -> bool:
    """Whether our `bwrap` launcher works here (probed once per process: a property of the machine)."""
    return sandbox_bwrap.works()


def default_backend() -> str:
    """The strongest isolating backend that works on this machine: `bubblewrap` if `bwrap` works, else `userns`."""
    return "bubblewrap" if _bwrap_works() else "userns"


def available_backends() -> list[str]:
    """The isolation backends usable on this machine (`none` is always listed)."""
    from union import sandbox as sb

    native = {name for name, ok in sb.on_device.available_backends() if ok}
    userns = "userns" in native and userns_problem() is None
    usable = {"bubblewrap": _bwrap_works(), "userns": userns, "none": True}
    return [name for name in BACKENDS if usable[name]]


COMMON_GAPS = (
    "CPU is neither pinned nor throttled: a run can use more threads than granted; its CPU time is measured "
    "(train_cpu_s) and judged against its prediction, and capped only by the deadline",
    "covert channels through shared CPU load and the page cache of the shared read-only files are not closed",
)


BACKEND_GAPS = {
    "bubblewrap": COMMON_GAPS,
    "userns": COMMON_GAPS
    + (
        "no PID namespace: the run sees host processes and can signal any process of the same user",
        "the host /tmp and /dev/shm are shared: the run can leave files there, and two sandboxes training at "
        "once can pass data through them (trained weights, say, whose compute then counts for neither)",
        "the host's /usr, /etc, /tmp and /dev/shm are readable: held-out text that lies there (a corpus package "
        "installed into the system Python, a copy of a bundle or a virtualenv under /tmp) is within reach; the "
        "project keeps its bundles, state and interpreter view elsewhere, but cannot vouch for the rest of the host",
        "host Unix sockets are reachable: the run can connect to any socket whose path it can name",
    ),
    "none": (
        "no isolation at all: the run can read and write everything this user can (ledger, bundles, "
        "virtualenv), reach the network, see and signal every process, and outlive the run",
    ),
}


def cgroup_gaps(backend: str, layout: cgroups.Layout) -> tuple[str, ...]:
    """What is lost where no cgroup (or no memory controller) can be used for each sandbox (`cgroups.py`)."""
    gaps: tuple[str, ...] = ()
    if not layout.limits_memory:
        gaps += (
            f"no memory cgroup ({layout.describe()}): memory is an address-space limit per process (RLIMIT_AS), so "
            "a run that forks can hold a multiple of its memory, and tmpfs files are not counted",
        )
    if layout.mode == "none" and backend == "userns":
        gaps += (
            "no cgroup: a process that clears its environment and leaves its work dir can outlive the run, and "
            "phase 1's CPU time is sampled from /proc (a lower bound that misses such a daemon)",
        )
    elif layout.mode == "none" and backend == "bubblewrap":
        gaps += ("no cgroup: a run killed at its deadline reports less CPU time than it used (wait4 misses it)",)
    return gaps


def missing_guarantees(backend: str) -> list[str]:
    """What `backend` cannot guarantee on this machine, one sentence each, for the driver to say once at start."""
    if backend not in BACKEND_GAPS:
        raise ValueError(f"unknown sandbox backend {backend!r}; choose one of {BACKENDS}")
    extra = cgroup_gaps(backend, cgroups.host()) if backend != "none" else ()
    return list(BACKEND_GAPS[backend] + extra)


def backend_problem(backend: str, allow_unsandboxed: bool) -> str | None:
    """Why `backend` may not run (unknown, or `none` without the explicit opt-in), or None."""
    if backend not in BACKENDS:
        return f"unknown sandbox backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    if backend == "userns":
        return userns_problem()
    if backend == "none" and not allow_unsandboxed:
        return (
            "backend 'none' runs the edited train.py with NO isolation: opt in explicitly (--allow-unsandboxed, "
            "allow_unsandboxed=True) or use an isolating backend"
        )
    return None


def require(backend: str, allow_unsandboxed: bool) -> None:
    """Where an experiment runs: an explicitly chosen backend must work here, or the run refuses with the reason
    (raised as non-recoverable: retrying on the same kind of pod cannot help). "" picks the strongest available."""
    if not backend:
        return
    problem = backend_problem(backend, allow_unsandboxed)
    if problem is None and backend == "bubblewrap" and not _bwrap_works():
        problem = (
            "backend 'bubblewrap' was required, but bwrap cannot create its namespaces here (in a Kubernetes pod a "
            "masked /proc or the runtime's seccomp profile stops it); leave --backend unset to fall back to the "
            "strongest backend that works, or run on pods that allow it (README: On a cluster)"
        )
    if problem:
        import flyte.errors

        raise flyte.errors.NonRecoverableError(problem, code="SandboxUnavailable")


def check_backend(backend: str, allow_unsandboxed: bool) -> None:
    """Refuse an unknown backend, or `none` without the explicit opt-in; warn loudly on `none`."""
    problem = backend_problem(backend, allow_unsandboxed)
    if problem:
        raise ValueError(problem)
    if backend == "none":
        banner = "!" * 78
        print(
            f"{banner}\n!!! sandbox backend 'none': UNTRUSTED train.py RUNS WITH NO ISOLATION !!!\n{banner}",
            file=sys.stderr,
        )
        warnings.warn("sandbox backend 'none': no isolation", RuntimeWarning, stacklevel=3)
