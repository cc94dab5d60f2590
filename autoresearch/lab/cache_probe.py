"""Would a cached task answer a call from Flyte's local cache? Known before the call, without running anything.

`right_size` asks an LLM how big an experiment should be; for a run whose result is already cached that
question is wasted (seconds to minutes on a local model), because the task will not run at all. Flyte's
local controller keys its cache by the task's name, its inputs (without the ignored ones), its interface and
its cache version, and keeps the outputs in a SQLite table. `is_cached_locally` builds that key the way the
controller does, from the same SDK functions, and looks it up.

Only local mode has a cache this process can read cheaply. On a cluster, or if anything here fails (an SDK
change), the answer is False: the LLM is asked as before, so a wrong "no" costs one call, never a result.
The SDK version is pinned (`flyte==2.12.1`); `tests/test_sizing_cache.py` checks the answer against the
controller's real hits and misses.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


async def is_cached_locally(task: Any, kwargs: dict[str, Any]) -> bool:
    """True when calling `task(**kwargs)` now, in local mode, would be a cache hit; False when not or unknown."""
    try:
        return await _lookup(task, kwargs)
    except Exception as exc:  # unknown is "not cached": the caller then does what it always did
        log.debug("cache probe failed (%s: %s)", type(exc).__name__, exc)
        return False


async def _lookup(task: Any, kwargs: dict[str, Any]) -> bool:
    """The controller's cache key for this call, looked up in the local cache table."""
    import flyte
    from flyte._cache.cache import VersionParameters, cache_from_request
    from flyte._internal.runtime import convert
    from flyte._internal.runtime.types_serde import transform_native_to_typed_interface
    from flyte._persistence._task_cache import LocalTaskCache
    from flyte._task import AsyncFunctionTaskTemplate

    ctx = flyte.ctx()
    if ctx is None or ctx.mode != "local" or getattr(ctx, "disable_run_cache", False):
        return False
    cache = cache_from_request(task.cache)
    if cache.behavior != "auto":
        return False
    func = task.func if isinstance(task, AsyncFunctionTaskTemplate) else None
    version = cache.get_version(VersionParameters(func=func, image=task.image))
    inputs = await convert.convert_from_native_to_inputs(task.native_interface, **kwargs)
    key = convert.generate_cache_key_hash(
        task.name,
        convert.generate_inputs_hash_from_proto(inputs.proto_inputs),
        transform_native_to_typed_interface(task.interface),
        version,
        list(cache.get_ignored_inputs()),
        inputs.proto_inputs,
    )
    return await LocalTaskCache.get(key) is not None
