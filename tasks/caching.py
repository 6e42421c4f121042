"""Caching of preprocessing tasks: re-running on unchanged input reuses the results.

The key covers the task's inputs, its input files' content and the source of the task and of the core
modules it calls; flows call cached tasks through :func:`call_cached`, which recomputes when an output is
gone. See docs/orchestration.md, section "Failure isolation and reruns"."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence

from prefect.cache_policies import INPUTS, TASK_SOURCE, CachePolicy

from flamenco_core.env import home
from flamenco_core.ingest.manifest import content_hash


def cache_root() -> Path:
    """``$FLAMENCO_HOME/cache``: where cached results and their keys live."""
    return home() / "cache"


def _paths_in(value: Any) -> list[Path]:
    if isinstance(value, (str, os.PathLike)):
        p = Path(value)
        try:
            return [p] if p.is_file() else []
        except OSError:  # a long non-path string
            return []
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in _paths_in(v)]
    return []


@dataclass
class InputFiles(CachePolicy):
    """Key on the content (SHA-256) of the files named by the task's arguments ``params`` (all arguments
    holding paths of existing files when empty). Output folders are not files, so they never enter here."""

    params: Sequence[str] = field(default_factory=tuple)

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> Optional[str]:
        names = list(self.params) or sorted(inputs or {})
        digests = []
        for name in names:
            for p in _paths_in((inputs or {}).get(name)):
                digests.append(f"{name}:{content_hash(p)}")
        if not digests:
            return None
        return hashlib.sha256("\n".join(digests).encode()).hexdigest()


def _module_files(module: str) -> list[Path]:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(module)
    origin = Path(spec.origin)
    if spec.submodule_search_locations:  # a package: every module in it
        return sorted(p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.py"))
    return [origin]


@dataclass
class CoreSource(CachePolicy):
    """Key on the source text of core modules (a package means all its modules): the task's own source
    does not change when the function it wraps does."""

    modules: Sequence[str] = field(default_factory=tuple)

    def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs) -> Optional[str]:
        if not self.modules:
            return None
        h = hashlib.sha256()
        for m in self.modules:
            for f in _module_files(m):
                h.update(f.name.encode())
                h.update(f.read_bytes())
        return h.hexdigest()


def preprocessing_policy(files: Sequence[str] = (), code: Sequence[str] = ()) -> CachePolicy:
    """``INPUTS + TASK_SOURCE + InputFiles(files) + CoreSource(code)``, keys stored under
    :func:`cache_root`."""
    policy = INPUTS + TASK_SOURCE + InputFiles(params=tuple(files)) + CoreSource(modules=tuple(code))
    return policy.configure(key_storage=cache_root() / "keys")


def cached(files: Sequence[str] = (), code: Sequence[str] = ()) -> dict:
    """Keyword arguments for ``@task`` that make it a cached preprocessing task (policy, persisted result
    in the project-local store)::

        @task(name="ingest", retries=2, **cached(files=("sources",), code=("flamenco_core.ingest",)))
    """
    return {
        "cache_policy": preprocessing_policy(files, code),
        "persist_result": True,
        # A Path (not an unsaved block): Prefect turns it into local storage without a server round trip.
        "result_storage": cache_root() / "results",
    }


def call_cached(task, *args, outputs: Callable[[Any], Iterable[str | Path | None]], **kwargs) -> tuple[Any, bool]:
    """Call a cached task inside a flow; returns ``(result, cached)``.

    ``outputs(result)`` lists the files the result points to; when a cache hit names a file that no
    longer exists, the task runs again with ``refresh_cache=True`` (which also replaces the stale cache
    entry). Failures raise as a plain task call would.
    """
    state = task(*args, return_state=True, **kwargs)
    result = state.result()
    hit = state.name == "Cached"
    if hit and any(p is not None and not Path(p).exists() for p in outputs(result)):
        state = task.with_options(refresh_cache=True)(*args, return_state=True, **kwargs)
        result, hit = state.result(), False
    return result, hit
