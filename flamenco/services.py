"""The service supervisor: Prefect and MLflow servers and Prefect workers as child processes in their own
process groups, so stopping one takes down everything it spawned (uvicorn workers, flow-run processes).
``flamenco serve`` and the end-to-end deployment tests use it.

A Prefect process worker starts each flow run in a session of its own (so that a signal to the worker's
group does not reach the run before the worker's intent does): the group alone does not hold the runs.
Stopping a service therefore also ends the processes below it, found through ``/proc`` before the first
signal, since once their parent is gone they belong to init."""

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

#: The checkout whose prefect.yaml is deployed.
PROJECT_DIR = Path(__file__).resolve().parents[1]
#: The Prefect work pool the served deployments run on.
WORK_POOL = "flamenco-process"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for tests and ``--port 0``)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def tool(name: str) -> str:
    """The path of the console script ``name`` (prefect, mlflow) of this environment."""
    # The venv's console scripts sit beside its python; a bare name would find another install's first.
    p = Path(sys.executable).with_name(name)
    return str(p) if p.exists() else (shutil.which(name) or name)


def _stat(pid: int | str) -> Optional[tuple[int, int]]:
    """``(parent pid, start time)`` of ``pid`` from ``/proc`` (start time in clock ticks since boot, to tell
    the process from a later one that reuses the number); ``None`` when it is gone or there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name, in parentheses, may hold spaces and parentheses: the fields follow the last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19])


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every process below ``pid`` (children, grandchildren, ... whatever session they moved to) as
    ``(pid, start_time)`` pairs; empty where there is no ``/proc``."""
    try:
        entries = [int(e) for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return []
    children: dict[int, list[tuple[int, int]]] = {}
    for p in entries:
        st = _stat(p)
        if st is not None:  # else it ended while we looked
            children.setdefault(st[0], []).append((p, st[1]))
    out, todo = [], list(children.get(pid, []))
    while todo:
        proc = todo.pop()
        out.append(proc)
        todo.extend(children.get(proc[0], []))
    return out


def _alive(proc: tuple[int, int]) -> bool:
    st = _stat(proc[0])
    return st is not None and st[1] == proc[1]


def _kill_procs(procs: list[tuple[int, int]]) -> None:
    for p in procs:
        if _alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p[0], signal.SIGKILL)


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

    def kill(self, tree: Optional[list[tuple[int, int]]] = None) -> None:
        """SIGKILL the group and every process below the leader (``tree``: as :func:`descendants` gave
        it before an earlier signal; taken now when not given), as if the machine went down."""
        tree = descendants(self.proc.pid) if tree is None else tree
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        _kill_procs(tree)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL what is left after ``timeout`` s: no orphaned workers."""
        stop_all([self], timeout)


def stop_all(services: list[Service], timeout: float = 10.0) -> None:
    """Stop services together: SIGTERM every group at once, wait up to ``timeout`` s for all, SIGKILL the
    rest, flow runs in sessions of their own included (a Prefect worker's graceful shutdown alone can take
    longer than the servers')."""
    trees = [descendants(s.proc.pid) for s in services]
    for s in services:
        s.terminate()
    deadline = time.time() + timeout
    while time.time() < deadline and any(s.group_alive() or any(map(_alive, t)) for s, t in zip(services, trees)):
        time.sleep(0.2)
    for s, t in zip(services, trees):
        if s.group_alive() or any(map(_alive, t)):
            s.kill(t)
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
        res = subprocess.run([tool("prefect"), "--no-prompt", *args], env=self.env, cwd=self.project_dir,
                             capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        return res

    def start_worker(self, *extra: str) -> Service:
        """A process worker on the ``flamenco-process`` pool (flow runs go to the MLflow server)."""
        svc = start_service(f"worker-{len(self.services)}", [tool("prefect"), "worker", "start", "--pool", WORK_POOL,
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
        if port_in_use(host, port):
            raise RuntimeError(f"{host}:{port} is already in use (pick another port)")
    env = stack_env(home, project_dir, prefect_url, mlflow_url)
    stack = Stack(prefect_url, mlflow_url, env, home, project_dir)
    logs = home / "logs"
    try:
        # Both servers start at once: their startups (database migrations) overlap.
        prefect_srv = start_service("prefect-server", [tool("prefect"), "server", "start", "--host", host,
                                                       "--port", str(prefect_port)], env, logs)
        stack.services.append(prefect_srv)
        mlflow_srv = start_service("mlflow-server", [
            tool("mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
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
