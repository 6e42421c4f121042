"""``flamenco watch-dumps``, ``flamenco serve`` and ``flamenco compare``: plain functions with
typer-annotated parameters, registered on the app by :mod:`flamenco.cli`.

The service helpers (:func:`serve_stack`) start real servers as child processes in their own process
groups, so stopping one takes down everything it spawned (uvicorn workers, flow-run processes); the
end-to-end deployment test uses the same code.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flamenco.errors import fail

console = Console()
err = Console(stderr=True)

PROJECT_DIR = Path(__file__).resolve().parents[1]
WORK_POOL = "flamenco-process"


def _fail(msg: str, code: int = 2) -> None:
    # plain text, one line: rich would wrap a long path mid-word (the policy: flamenco.errors)
    fail(msg, code)


# ------------------------------------------------------------------------------------------ watch-dumps


def watch_dumps_cmd(
    directory: Path = typer.Argument(..., help="folder of dumps (warts, scamper JSON, RIPE Atlas JSON; gz/bz2 or not)"),
    out: Path = typer.Option(..., "--out", help="output folder: watch_report.json, manifest.json, dumps/<name>-<hash>/"),
    once: bool = typer.Option(False, "--once", help="process the new dumps once and exit (default: keep watching)"),
    interval: float = typer.Option(300.0, "--interval", help="seconds between scans when watching"),
    experiment: str = typer.Option("flamenco-watch", "--experiment", help="MLflow experiment of the per-dump runs"),
    pipeline: str = typer.Option("auto", "--pipeline", help="auto (latency when available) | latency | ingest"),
    config: Optional[Path] = typer.Option(None, "--config", help="latency pipeline config (YAML)"),
    min_points: int = typer.Option(100, "--min-points", help="ingest fallback: smallest SD pair kept"),
    min_age: float = typer.Option(0.0, "--min-age", help="leave files modified less than this many seconds ago"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run dumps that failed before again"),
    recursive: bool = typer.Option(False, "--recursive", help="also look in subfolders"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest file (default OUT/manifest.json)"),
    runner: Optional[str] = typer.Option(None, "--runner", help="threads | processes | dask: the per-pair fan-out of each dump's pipeline"),
    workers: Optional[int] = typer.Option(None, "--workers", help="task-runner workers"),
) -> None:
    """Run the latency pipeline on each new dump in DIR (new = content never seen, by SHA-256); write
    OUT/watch_report.json with the files processed, skipped and failed. Exit code 1 when a dump failed."""
    import logging

    from flamenco_core.env import setup_environment

    if pipeline not in ("auto", "latency", "ingest"):
        _fail(f"--pipeline {pipeline!r}: choose auto, latency or ingest")
    if not directory.is_dir():
        _fail(f"{directory}: no such folder")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flamenco_core.env import quiet_prefect_console

    quiet_prefect_console()  # failed dumps are listed in the table; --debug shows Prefect's log
    setup_environment()
    from flows.watch import watch_dumps_flow

    params = dict(directory=str(directory), out=str(out), experiment=experiment, pipeline=pipeline,
                  min_points=min_points, min_age_s=min_age, retry_failed=retry_failed, recursive=recursive,
                  manifest=str(manifest) if manifest else None, config=str(config) if config else None,
                  runner=runner, workers=workers)
    any_failed = False
    try:
        while True:
            with console.status(f"processing new dumps in {directory}"):
                report = watch_dumps_flow(**params)
            if once and report.get("busy"):  # another watcher holds this manifest: nothing was done
                _fail(f"{report['busy']}; nothing done", 3)
            _print_watch(report, out)
            any_failed |= bool(report["failed"])
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("stopped")
    if any_failed:
        raise typer.Exit(1)


def _print_watch(report: dict, out: Path) -> None:
    if report.get("busy"):
        console.print(Text(f"{report['busy']}: nothing done", style="yellow"))
        return
    t = Table(title=f"dumps in {report['directory']} ({report['pipeline']} pipeline)")
    for c in ("file", "outcome", "detail"):
        t.add_column(c)
    for f in report["processed"]:
        t.add_row(f, Text("processed", style="green"), "resumed after a crash" if f in report.get("resumed", []) else "")
    for f in report["failed"]:
        t.add_row(f["file"], Text("failed", style="red"), f["error"][:200])
    for f in report["skipped"]:
        t.add_row(f, "skipped", report["skipped_reasons"].get(f, ""))
    console.print(t)
    console.print(Text(f"{len(report['processed'])} processed, {len(report['failed'])} failed, "
                       f"{len(report['skipped'])} skipped; report: {out / 'watch_report.json'}"))


# ----------------------------------------------------------------------------------------------- serve


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests and ``--port 0``)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _bin(name: str) -> str:
    # The venv's console scripts sit beside its python; a bare name would find another install's first.
    p = Path(sys.executable).with_name(name)
    return str(p) if p.exists() else (shutil.which(name) or name)


@dataclass
class Service:
    """A child process in its own process group, with its output in ``log``."""

    name: str
    proc: subprocess.Popen
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def terminate(self) -> None:
        """SIGTERM the whole process group (the leader and everything it spawned)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)

    def group_alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        # The leader may be gone while children it spawned (uvicorn, flow runs) linger in the group.
        try:
            os.killpg(self.proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL what is left after ``timeout`` s: no orphaned workers."""
        stop_all([self], timeout)


def stop_all(services: list[Service], timeout: float = 10.0) -> None:
    """Stop services together: SIGTERM every group at once, wait up to ``timeout`` s for all, SIGKILL the
    rest (a Prefect worker's graceful shutdown alone can take longer than the servers')."""
    for s in services:
        s.terminate()
    deadline = time.time() + timeout
    while time.time() < deadline and any(s.group_alive() for s in services):
        time.sleep(0.2)
    for s in services:
        if s.group_alive():
            s.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            s.proc.wait(5)


def start_service(name: str, cmd: list[str], env: dict, log_dir: Path, cwd: Path | None = None) -> Service:
    """Start ``cmd`` in a new session (its own process group), output to ``log_dir/<name>.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    fh = open(log, "ab")
    try:
        proc = subprocess.Popen(cmd, env=env, cwd=str(cwd) if cwd else None, stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        fh.close()
    return Service(name, proc, log)


def wait_http(url: str, service: Service | None = None, timeout: float = 180.0, expect: str | None = None) -> None:
    """Poll ``url`` until it answers 200 (and contains ``expect``); raise ``RuntimeError`` with the
    service's log tail when it dies or ``timeout`` passes."""
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if service is not None and not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                body = r.read().decode(errors="replace")
                if r.status == 200 and (expect is None or expect in body):
                    return
                last = f"HTTP {r.status}: {body[:200]}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.5)
    tail = service.tail() if service else ""
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s ({last})\n{tail}")


def deployments_in(prefect_file: Path) -> list[dict]:
    """The deployments of a ``prefect.yaml`` with ``available``: whether the entrypoint's file exists
    (another pipeline may not be there yet)."""
    import yaml

    data = yaml.safe_load(prefect_file.read_text()) or {}
    out = []
    for d in data.get("deployments") or []:
        entry = str(d.get("entrypoint", ""))
        out.append({**d, "available": bool(entry) and (prefect_file.parent / entry.split(":")[0]).is_file()})
    return out


@dataclass
class Stack:
    """Running services and what a client needs to reach them."""

    prefect_url: str
    mlflow_url: str
    env: dict
    home: Path
    project_dir: Path
    services: list[Service] = field(default_factory=list)
    deployed: list[str] = field(default_factory=list)
    not_deployed: list[str] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        return f"{self.prefect_url}/api"

    def prefect(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``prefect`` CLI against this stack's server, from the project folder."""
        res = subprocess.run([_bin("prefect"), "--no-prompt", *args], env=self.env, cwd=self.project_dir,
                             capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def start_worker(self, *extra: str) -> Service:
        """A process worker on the ``flamenco-process`` pool (flow runs go to the MLflow server)."""
        svc = start_service(f"worker-{len(self.services)}", [_bin("prefect"), "worker", "start", "--pool", WORK_POOL,
                                                             "--type", "process", *extra],
                            self.env, self.home / "logs", cwd=self.project_dir)
        self.services.append(svc)
        return svc


def stack_env(home: Path, project_dir: Path, prefect_url: str, mlflow_url: str) -> dict:
    """Environment of the servers, the CLI calls and the worker: every store under ``home``."""
    env = dict(os.environ)
    env.update({
        "FLAMENCO_HOME": str(home),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_API_URL": f"{prefect_url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOCAL_STORAGE_PATH": str(home / "prefect" / "storage"),
        # Flow runs started by the worker log to the MLflow server, the UI's own store.
        "MLFLOW_TRACKING_URI": mlflow_url,
        "FLAMENCO_ARTIFACT_ROOT": (home / "mlartifacts").as_uri(),
        # prefect.yaml's pull step sets the flow run's working directory from this.
        "FLAMENCO_PROJECT_DIR": str(project_dir),
        # MLflow's background job runner (GenAI jobs) starts a handful of processes we never use.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PYTHONUNBUFFERED": "1",
    })
    env.pop("PREFECT_PROFILE", None)
    return env


@contextlib.contextmanager
def serve_stack(
    home: Path,
    *,
    host: str = "127.0.0.1",
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    project_dir: Path = PROJECT_DIR,
    deploy: Optional[List[str]] = None,
    worker: bool = True,
    timeout: float = 240.0,
) -> Iterator[Stack]:
    """Start a Prefect server and an MLflow server (SQLite stores under ``home``) on ``host``, create the
    ``flamenco-process`` work pool, deploy from ``project_dir/prefect.yaml`` (``deploy``: deployment
    names; ``None``: every deployment whose entrypoint exists; ``[]``: none) and start a worker. Yields a
    :class:`Stack`; on exit every service's process group is stopped, whatever happened."""
    home = Path(home).resolve()
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    prefect_url, mlflow_url = f"http://{host}:{prefect_port}", f"http://{host}:{mlflow_port}"
    for port in (prefect_port, mlflow_port):
        if _port_in_use(host, port):
            raise RuntimeError(f"{host}:{port} is already in use (pick another port)")
    env = stack_env(home, project_dir, prefect_url, mlflow_url)
    stack = Stack(prefect_url, mlflow_url, env, home, project_dir)
    logs = home / "logs"
    try:
        # Both servers start at once: their startups (database migrations) overlap.
        prefect_srv = start_service("prefect-server", [_bin("prefect"), "server", "start", "--host", host,
                                                       "--port", str(prefect_port)], env, logs)
        stack.services.append(prefect_srv)
        mlflow_srv = start_service("mlflow-server", [
            _bin("mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
            "--default-artifact-root", (home / "mlartifacts").as_uri(), "--host", host, "--port", str(mlflow_port),
            "--workers", "1"], env, logs)
        stack.services.append(mlflow_srv)
        wait_http(f"{prefect_url}/api/health", prefect_srv, timeout, expect="true")
        wait_http(f"{mlflow_url}/health", mlflow_srv, timeout)

        pools = stack.prefect("work-pool", "ls", check=False)
        if WORK_POOL not in pools.stdout:
            stack.prefect("work-pool", "create", WORK_POOL, "--type", "process")
        available = {d["name"]: d for d in deployments_in(project_dir / "prefect.yaml")}
        wanted = [n for n, d in available.items() if d["available"]] if deploy is None else list(deploy)
        stack.not_deployed = [n for n in available if n not in wanted]
        for name in wanted:
            if name not in available:
                raise RuntimeError(f"no deployment {name!r} in {project_dir / 'prefect.yaml'}")
            stack.prefect("deploy", "--name", name)
            stack.deployed.append(name)
        if worker:
            stack.start_worker()
        yield stack
    finally:
        stop_all(stack.services)


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (loopback by default)"),
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Prefect server and UI port"),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="MLflow server and UI port"),
    deploy: List[str] = typer.Option([], "--deploy", help="deployment to create (repeatable; default: all whose flow exists)"),
    no_deploy: bool = typer.Option(False, "--no-deploy", help="start the servers and the worker only"),
    no_worker: bool = typer.Option(False, "--no-worker", help="do not start a worker"),
) -> None:
    """Start a real Prefect server, an MLflow server and a process worker on loopback (SQLite stores under
    FLAMENCO_HOME), create the flamenco-process work pool and deploy from prefect.yaml; print the UI URLs
    and run until Ctrl-C, then stop everything."""
    from flamenco_core.env import setup_environment

    home = setup_environment()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(Text(f"warning: listening on {host}: the servers have no authentication", style="yellow"))
    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM ends the wait like Ctrl-C, so the finally clause tears down; SIGINT is set explicitly because
    # a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with console.status("starting the Prefect and MLflow servers (first start migrates the databases)"):
            ctx = serve_stack(home, host=host, prefect_port=prefect_port, mlflow_port=mlflow_port,
                              deploy=[] if no_deploy else (deploy or None), worker=not no_worker)
            stack = ctx.__enter__()
        try:
            t = Table(title="flamenco serve", show_header=False)
            t.add_row("Prefect UI", stack.prefect_url)
            t.add_row("MLflow UI", stack.mlflow_url)
            t.add_row("work pool", f"{WORK_POOL} (process)" + ("" if no_worker else ", one worker"))
            t.add_row("deployments", ", ".join(stack.deployed) or "-")
            if stack.not_deployed:
                t.add_row("not deployed", ", ".join(stack.not_deployed))
            t.add_row("stores", f"{home / 'prefect'} (Prefect), {home / 'mlflow.db'} (MLflow)")
            t.add_row("logs", str(home / "logs"))
            console.print(t)
            console.print(f"Run a deployment: PREFECT_API_URL={stack.api_url} prefect deployment run 'flamenco-ingest/ingest' "
                          "--params '{\"sources\": [\"FILE\"], \"fmt\": \"scamper\", \"out_dir\": \"out/ingest\"}'")
            console.print("Ctrl-C stops everything.")
            while True:
                dead = [s for s in stack.services if not s.alive()]
                if dead:
                    err.print(Text(f"{dead[0].name} exited ({dead[0].proc.returncode}):\n{dead[0].tail(20)}", style="red"))
                    raise typer.Exit(1)
                time.sleep(1)
        finally:
            with console.status("stopping the worker and the servers"):
                ctx.__exit__(None, None, None)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how `serve` is stopped; the finally block above already tore the stack down
    except RuntimeError as exc:
        _fail(str(exc), 1)
    console.print("stopped.")


# -------------------------------------------------------------------------------------------------- ui


def ui_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (loopback by default)"),
    port: int = typer.Option(5000, "--port", help="port of the MLflow UI"),
) -> None:
    """Start the MLflow UI on this project's tracking store (FLAMENCO_HOME's SQLite, or
    MLFLOW_TRACKING_URI) and run until Ctrl-C; prints the URL first."""
    from flamenco_core.env import setup_environment

    setup_environment()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if _port_in_use(host, port):
        _fail(f"{host}:{port} is already in use (pick another --port)", 1)
    cmd = [_bin("mlflow"), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no GenAI job runner: nothing uses it
    console.print(Text(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it"), soft_wrap=True)
    proc = subprocess.Popen(cmd, env=env)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


# --------------------------------------------------------------------------------------------- compare


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def comparison_markdown(table, metric: str, experiment: str) -> str:
    """The comparison as a Markdown table (what ``compare`` writes to ``compare.md``)."""
    cols = [c for c in table.columns if c not in ("lf_pack",)]
    lines = [f"# LF-combination comparison: {experiment} (by {metric})", "",
             "| " + " | ".join(cols) + " |", "| " + " | ".join("---:" if str(table[c].dtype).startswith(("float", "int")) else "---"
                                                            for c in cols) + " |"]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]).replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"


def compare_legend(table) -> dict[str, str]:
    """The A/B/C legend of the compared combinations (LF names split on " + ")."""
    from flamenco_core.report import lf_legend

    return lf_legend(str(c).split(" + ") for c in table["combination"])


def comparison_figure(table, metric: str, path: Path, experiment: str = "") -> Path:
    """A horizontal bar chart of the metric per combination (one panel per dataset; bars named by the
    legend, which is spelled out under the title), saved to ``path``."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flamenco_core.report import legend_text, short_name

    legend = compare_legend(table)
    datasets = list(dict.fromkeys(table["dataset"]))
    heights = [max(1, int((table["dataset"] == d).sum())) for d in datasets]
    lines = textwrap.wrap(legend_text(legend, sep="; "), 95)
    fig, axes = plt.subplots(len(datasets), 1, figsize=(8, 1.6 + 0.2 * len(lines) + 0.35 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, d in zip(axes[:, 0], datasets):
        sub = table[table["dataset"] == d].iloc[::-1]
        ax.barh([short_name(str(c).split(" + "), legend) for c in sub["combination"]], sub[metric].fillna(0.0),
                xerr=sub[f"{metric}_std"].fillna(0.0), color="#4477aa")
        n = int(sub["runs"].sum()) if "runs" in sub else len(sub)
        ax.set_title(f"dataset {d or '(no dataset tag)'}: {n} runs", fontsize=10)
        ax.set_xlabel(f"{metric} (mean and std over runs)")
        ax.set_xlim(0, max(1.0, float(sub[metric].max() or 0) * 1.05))
    fig.suptitle("\n".join([f"{experiment}: {metric} per LF combination".strip(": "), *lines]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # the format named: an atomic write's temporary name has no suffix
    plt.close(fig)
    return path


def compare_cmd(
    experiment: str = typer.Option(..., "--experiment", help="MLflow experiment"),
    metric: str = typer.Option("cls_f1", "--metric", help="metric to rank combinations by"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for compare.csv, compare_runs.csv, compare.md, compare.png (default ./compare-<experiment>)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="only runs of this dataset (tag flamenco.dataset)"),
    log: bool = typer.Option(False, "--log", help="also log the table and figure to a 'compare' run in the experiment"),
) -> None:
    """Compare LF combinations across the runs of an experiment (MLflow search_runs): print the table,
    export CSV and Markdown, and draw the metric per combination."""
    from flamenco_core.env import setup_environment

    setup_environment()
    from tasks import tracking

    try:
        runs, table = tracking.comparison(experiment, metric, dataset)
    except ValueError as exc:
        _fail(str(exc))
    from flamenco_core.outputs import atomic_path, atomic_write_text

    target = out or Path(f"compare-{experiment}")
    if target.exists() and not target.is_dir():
        _fail(f"--out {target} is a file; give a folder")
    target.mkdir(parents=True, exist_ok=True)
    for name, frame in (("compare.csv", table), ("compare_runs.csv", runs)):
        with atomic_path(target / name) as tmp:
            frame.to_csv(tmp, index=False)
    atomic_write_text(target / "compare.md", comparison_markdown(table, metric, experiment))
    with atomic_path(target / "compare.png") as tmp:
        comparison_figure(table, metric, tmp, experiment)
    fig = target / "compare.png"

    from flamenco_core.report import short_name

    # 80 columns: combinations by their legend letters (spelled out below), at most three other metrics,
    # one table per dataset; the full table is in compare.csv.
    legend = compare_legend(table)
    others = [c for c in tracking.COMPARE_METRICS if c in table.columns and c != metric][:3]
    shown = ["rank", "LFs", "runs", metric, "std", *others]
    for d, sub in table.groupby("dataset", sort=False):
        t = Table(title=Text(f"{experiment} / {d or '-'}: by {metric}"), min_width=40)
        for c in shown:
            t.add_column(c, justify="left" if c == "LFs" else "right", overflow="fold")
        for _, row in sub.iterrows():
            t.add_row(_fmt(row["rank"]), Text(short_name(str(row["combination"]).split(" + "), legend)),
                      _fmt(row["runs"]), _fmt(row[metric]), _fmt(row[f"{metric}_std"]), *(_fmt(row[c]) for c in others))
        console.print(t)
    for name, letter in legend.items():  # one per line: a wrapped LF name cannot be read or copied
        console.print(Text(f"  {letter} = {name}"), soft_wrap=True)
    console.print(Text(f"{len(runs)} runs"))
    if log:
        key = tracking.run_key("flamenco-compare", None, {"experiment": experiment, "metric": metric, "dataset": dataset})
        rid = tracking.start_run(experiment, f"compare-{metric}", key=key, params={"metric": metric, "dataset": dataset},
                                 tags=tracking.standard_tags(pipeline="compare"))
        tracking.log_artifacts(rid, [target / "compare.csv", target / "compare.md"])
        tracking.log_figure(rid, fig, "compare.png")
        tracking.end_run(rid)
        console.print(Text(f"logged to run {rid}"))
    for f in ("compare.csv", "compare_runs.csv", "compare.md", "compare.png"):
        console.print(Text(f"wrote {target / f}"), soft_wrap=True)
