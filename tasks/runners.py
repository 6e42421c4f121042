"""Task runners: where a flow's mapped tasks run (``threads``, ``processes`` or ``dask``).

A subflow keeps its own runner, so a flow that fans out in one applies it with :func:`with_runner`. See
docs/orchestration.md, section "Runners: threads, processes, Dask"."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

RUNNERS = ("threads", "processes", "dask")

#: Dask config for the workers of a local cluster (the nanny hands it to each worker process). The
#: statistical profiler samples every thread's stack 100 times a second for the dashboard, which local
#: clusters here do not run; off, the same per-pair work ran about 4% faster (benchmarks/fanout.py).
LOCAL_WORKER_CONFIG = {"distributed.worker.profile.enabled": False}  # dotted: the worker dask.config.set()s it


def resolve(kind: str | None = None, workers: int | None = None, address: str | None = None,
            config: Mapping[str, Any] | str | Path | None = None) -> dict:
    """The runner choice from, in order of precedence: the arguments, ``config`` (a mapping or a YAML
    file with a ``runner:`` key holding a kind or ``{kind, workers, address}``), the environment
    (``FLAMENCO_RUNNER``, ``FLAMENCO_WORKERS``, ``FLAMENCO_DASK_ADDRESS``), then threads; an address
    with no kind given means dask."""
    cfg: dict = {}
    if isinstance(config, (str, Path)):
        import yaml

        loaded = yaml.safe_load(Path(config).read_text()) or {}
        config = loaded if isinstance(loaded, Mapping) else {}
    if isinstance(config, Mapping):
        r = config.get("runner", config.get("task_runner"))
        if isinstance(r, str):
            cfg = {"kind": r}
        elif isinstance(r, Mapping):
            cfg = dict(r)
    env_workers = os.environ.get("FLAMENCO_WORKERS")
    addr = address or cfg.get("address") or os.environ.get("FLAMENCO_DASK_ADDRESS")
    out = {
        # A scheduler address without a kind means Dask (`--scheduler tcp://...` alone).
        "kind": kind or cfg.get("kind") or ("dask" if addr else None) or os.environ.get("FLAMENCO_RUNNER") or "threads",
        "workers": workers or cfg.get("workers") or (int(env_workers) if env_workers else None),
        "address": addr,
    }
    if out["kind"] not in RUNNERS:
        raise ValueError(f"unknown runner {out['kind']!r}; choose one of {', '.join(RUNNERS)}")
    if out["address"] and out["kind"] != "dask":
        raise ValueError("a scheduler address needs the dask runner (--runner dask)")
    return out


def make_task_runner(kind: str = "threads", workers: int | None = None, address: str | None = None):
    """A fresh Prefect task runner of ``kind`` with ``workers`` workers (default: the CPU count)."""
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers or os.cpu_count() or 1)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            # One single-threaded process per worker: per-pair work is Python/pandas code that holds the
            # GIL. Loopback only and no dashboard (its port may be taken, and nothing must listen outside).
            cluster_kwargs={"n_workers": workers or os.cpu_count() or 1, "threads_per_worker": 1,
                            "processes": True, "host": "127.0.0.1", "dashboard_address": None,
                            "config": LOCAL_WORKER_CONFIG},
        )
    raise ValueError(f"unknown runner {kind!r}; choose one of {', '.join(RUNNERS)}")


def with_runner(flow, kind: str | None = "threads", workers: int | None = None, address: str | None = None):
    """``flow`` with the chosen task runner (``flow.with_options(task_runner=...)``); ``kind=None``
    keeps the flow's own runner."""
    if kind is None:
        return flow
    return flow.with_options(task_runner=make_task_runner(kind, workers, address))


def plain_http_ca_file(api_url: str | None) -> Path | None:
    """A one-certificate CA bundle for Prefect clients of an API served over plain HTTP, else None.

    Every task run in a Dask or process worker builds its own Prefect client, and each client builds a TLS
    context from ``PREFECT_API_SSL_CERT_FILE`` (certifi's ~150 certificates by default): about 40 ms a
    client, twice a task, 0.2 s of a task's 0.25 s of orchestration on 2 cores (profiled with py-spy). An
    ``http://`` API never negotiates TLS, so the bundle's content is never used; a one-certificate bundle
    (certifi's first) builds in under 1 ms. None when the URL is not plain HTTP. (Prefect's default bundle
    is ``SSL_CERT_FILE``'s, often the system's: whichever it is, a plain-HTTP client never reads it.)"""
    if not api_url or not api_url.startswith("http://"):
        return None
    import certifi

    from flamenco_core.env import setup_environment

    setup_environment()
    path = Path(os.environ["FLAMENCO_HOME"]) / "prefect-plain-http-ca.pem"
    if not path.is_file():
        pem = Path(certifi.where()).read_text()
        end = pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----\n")
        first = pem[pem.index("-----BEGIN CERTIFICATE-----"):end]
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(first)
        os.replace(tmp, path)  # concurrent callers write the same bytes; the rename keeps it whole
    return path


@contextmanager
def shared_local_api(kind: str | None) -> Iterator[str | None]:
    """Point worker processes at this process's Prefect API.

    Without ``PREFECT_API_URL`` Prefect runs a temporary local server per *process*: every process or
    Dask worker would start its own (~20 s of CPU each, then a share of a core for its background
    services, all writing one SQLite file). For ``processes`` and ``dask`` runners this starts (or finds)
    this process's local server and puts its URL in the settings that Prefect serializes to the workers,
    so they all report to one server; for a plain-HTTP API it also sets :func:`plain_http_ca_file`. A
    no-op for the ``threads`` runner. Yields the API URL in use (``None`` when unchanged)."""
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings

    if kind not in ("processes", "dask"):
        yield None
        return
    configured = PREFECT_API_URL.value()
    updates: dict = {}
    if not configured:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # a per-process singleton: the one this process's flows already use
        server.start()
        updates[PREFECT_API_URL] = server.api_url
    ca = plain_http_ca_file(configured or updates[PREFECT_API_URL])
    if ca is not None:
        updates[PREFECT_API_SSL_CERT_FILE] = str(ca)
    if not updates:
        yield None
        return
    # The bundle goes both ways: in the settings Prefect serializes with each task, and in the environment
    # that worker processes started meanwhile inherit (a client built before the task's settings are
    # hydrated reads that one).
    saved = os.environ.get("PREFECT_API_SSL_CERT_FILE")
    if ca is not None:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = str(ca)
    try:
        with temporary_settings(updates=updates):
            yield updates.get(PREFECT_API_URL)
    finally:
        if ca is not None:
            if saved is None:
                os.environ.pop("PREFECT_API_SSL_CERT_FILE", None)
            else:
                os.environ["PREFECT_API_SSL_CERT_FILE"] = saved


def fan_out(subflow, *args, runner: str | None = None, workers: int | None = None, scheduler: str | None = None,
            config: Mapping[str, Any] | str | Path | None = None, **kwargs) -> tuple[Any, dict]:
    """Call the fan-out ``subflow(*args, **kwargs)`` on the runner chosen by :func:`resolve` (arguments,
    then ``config``, then the environment), with worker processes reporting to this process's API.
    Returns ``(result, choice)``."""
    choice = resolve(runner, workers, scheduler, config)
    with shared_local_api(choice["kind"]):
        return with_runner(subflow, choice["kind"], choice["workers"], choice["address"])(*args, **kwargs), choice


def run_with_runner(flow, *args, runner: str = "threads", workers: int | None = None,
                    address: str | None = None, **kwargs):
    """Call ``flow(*args, **kwargs)`` with the chosen task runner (workers reporting to this process's
    API, :func:`shared_local_api`) and return its result."""
    with shared_local_api(runner):
        return with_runner(flow, runner, workers, address)(*args, **kwargs)
