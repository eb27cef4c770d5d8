#!/usr/bin/env python3
"""A multi-node Ray cluster on this machine, with object storage and an MLflow server.

    python cluster/local_cluster.py up     # start everything; prints the environment to use
    python cluster/local_cluster.py env    # the environment again (shell `export` lines)
    python cluster/local_cluster.py status # what runs, by process id
    python cluster/local_cluster.py down   # stop everything `up` started

`up` starts, each as its own process group with its log under ``<state>/logs``:

* ``s3``: an S3-compatible server (moto's server mode) on 127.0.0.1, with one bucket;
* ``mlflow``: ``mlflow server`` on 127.0.0.1, runs in SQLite under ``<state>``, artifacts proxied
  by the server into the S3 bucket;
* ``ray-head``: ``ray start --head`` with its dashboard (the Jobs API) on 127.0.0.1 and the
  custom resource ``dclr_head``;
* ``ray-worker``: a second ``ray start`` that joins the head, with ``dclr_worker``, so that
  where a task or training worker ran is visible (``ray list actors --detail``).

Both Ray nodes run with token authentication (a token made per cluster) and with the S3
credentials and the tracking URI in their environment, as a cluster's nodes are configured
by their operator: a job needs neither in its runtime env. The credentials are made up at
start for the local server and live only in ``<state>/env.json`` (mode 0600, outside the
repository).

`down` stops the process groups that `up` recorded, by process id (SIGTERM, then SIGKILL after
a grace period), in reverse order; it is safe to run twice and after a failed `up`. The state
directory is ``$DCLR_LOCAL_CLUSTER`` or ``<tmp>/dclr-local-cluster`` (``--state`` overrides).

Everything binds to 127.0.0.1 except Ray's own node-to-node ports, which Ray opens on the
node's address; the cluster is for one machine and is stopped when the work is done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
BUCKET = "dclr"
SERVICES = ("s3", "mlflow", "ray-head", "ray-worker")
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
"""The processes this process started, kept so that `down` in the same process reaps them."""
OBJECT_STORE_BYTES = 300 * 1024 * 1024
"""Per node: two nodes on one small machine must not claim half its memory each."""


def default_state() -> Path:
    return Path(
        os.environ.get("DCLR_LOCAL_CLUSTER", Path(tempfile.gettempdir()) / "dclr-local-cluster")
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log(message: str) -> None:
    print(f"[local-cluster] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# state


def read_state(state: Path) -> dict:
    path = state / "state.json"
    return json.loads(path.read_text()) if path.exists() else {"services": {}}


def write_state(state: Path, data: dict) -> None:
    tmp = state / ".state.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(state / "state.json")


def write_env(state: Path, env: dict[str, str]) -> None:
    path = state / "env.json"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(env, indent=1))


def read_env(state: Path) -> dict[str, str]:
    path = state / "env.json"
    if not path.exists():
        raise SystemExit(f"no cluster state in {state}: run `up` first")
    return dict(json.loads(path.read_text()))


# ------------------------------------------------------------------------------------------------
# processes


def start(state: Path, name: str, command: list[str], env: dict[str, str]) -> int:
    """Start ``command`` as the leader of a new process group; record its pid at once."""
    logs = state / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # The nodes find this environment's `dclr` and `python` first, as an image's would.
            env={**os.environ, **env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
            cwd=state,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    data = read_state(state)
    data["services"][name] = {"pid": process.pid, "command": shlex.join(command)}
    write_state(state, data)
    log(f"{name}: pid {process.pid} ({shlex.join(command[:3])} ...)")
    return process.pid


def alive(pid: int) -> bool:
    """Whether the process group ``pid`` leads has a live member (zombies do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
                return True
        return False
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(name: str, pid: int, grace: float = 30.0) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL if it outlives ``grace`` seconds."""
    if not alive(pid):
        if pid in _CHILDREN:
            _CHILDREN.pop(pid).wait(timeout=30)
        return
    log(f"stopping {name} (process group {pid})")
    started = time.monotonic()
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if pid in _CHILDREN:  # reap the leader when this process started it
            _CHILDREN[pid].poll()
        if not alive(pid):
            log(f"{name} stopped in {time.monotonic() - started:.1f} s")
            if pid in _CHILDREN:
                _CHILDREN.pop(pid).wait(timeout=30)
            return
        time.sleep(0.5)
    log(f"{name} did not stop in {grace:.0f} s: SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    if pid in _CHILDREN:
        _CHILDREN.pop(pid).wait(timeout=30)


def wait_for(what: str, check, pid: int, state: Path, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            tail = (state / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited while starting; the end of its log:\n{tail}")
        try:
            if check():
                log(f"{what} is ready")
                return
        except (OSError, ValueError, urllib.error.URLError, subprocess.SubprocessError):
            pass  # not up yet
        time.sleep(1.0)
    raise RuntimeError(f"{what} was not ready after {timeout:.0f} s (log: {state}/logs/{name}.log)")


def http_ok(url: str, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return bool(response.status == 200)


def ray_nodes(env: dict[str, str]) -> list[dict]:
    result = subprocess.run(
        [
            str(BIN / "ray"),
            "list",
            "nodes",
            "--format",
            "json",
            "--address",
            env["RAY_API_SERVER_ADDRESS"],
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listing = result.stdout[result.stdout.index("[") :]  # after any warnings Ray prints
    return [n for n in json.loads(listing) if n.get("state") == "ALIVE"]


def job_runs(env: dict[str, str]) -> bool:
    """Whether the cluster accepts and runs a job: ``ray job submit`` of a no-op."""
    command = [
        str(BIN / "ray"), "job", "submit", "--address", env["RAY_API_SERVER_ADDRESS"],
        "--", sys.executable, "-c", "pass",
    ]  # fmt: skip
    result = subprocess.run(
        command,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result.returncode == 0


# ------------------------------------------------------------------------------------------------
# commands


def up(state: Path, head_cpus: int, worker_cpus: int) -> dict[str, str]:
    state.mkdir(parents=True, exist_ok=True)
    running = {n: s for n, s in read_state(state)["services"].items() if alive(s["pid"])}
    if running:
        raise SystemExit(
            f"a cluster is already running from {state} ({', '.join(running)}): run `down` first"
        )
    write_state(state, {"services": {}})
    s3_port, mlflow_port, gcs_port, dashboard_port = (free_port() for _ in range(4))
    env = {
        "AWS_ACCESS_KEY_ID": "local" + secrets.token_hex(8),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "RAY_ADDRESS": f"127.0.0.1:{gcs_port}",
        "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "DCLR_S3_BUCKET": BUCKET,
        "DCLR_PROGRESS": "0",
        # A node told to stop first drains for this long (Ray's default, 30 s, is for
        # preemptible cloud nodes; here nothing is left to move when `down` runs).
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "5",
    }
    write_env(state, env)
    try:
        pid = start(
            state, "s3", [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)], env
        )
        wait_for(
            "S3 server", lambda: http_ok(f"{env['AWS_ENDPOINT_URL']}/moto-api/"), pid, state, "s3"
        )
        create_bucket(env)

        mlflow = [
            str(BIN / "mlflow"), "server",
            "--host", "127.0.0.1", "--port", str(mlflow_port),
            "--backend-store-uri", f"sqlite:///{state / 'mlflow.db'}",
            "--artifacts-destination", f"s3://{BUCKET}/mlflow-artifacts",
            "--serve-artifacts", "--workers", "1",
        ]  # fmt: skip
        pid = start(state, "mlflow", mlflow, env)
        wait_for(
            "MLflow server",
            lambda: http_ok(f"{env['MLFLOW_TRACKING_URI']}/health"),
            pid,
            state,
            "mlflow",
        )

        node = [
            "--node-ip-address",
            "127.0.0.1",
            "--object-store-memory",
            str(OBJECT_STORE_BYTES),
            "--block",
        ]
        head = [
            str(BIN / "ray"), "start", "--head", "--port", str(gcs_port),
            "--num-cpus", str(head_cpus), "--resources", json.dumps({"dclr_head": 1}),
            "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
            *node,
        ]  # fmt: skip
        pid = start(state, "ray-head", head, env)
        auth = {"Authorization": f"Bearer {env['RAY_AUTH_TOKEN']}"}
        url = f"{env['RAY_API_SERVER_ADDRESS']}/api/version"
        wait_for("Ray head (Jobs API)", lambda: http_ok(url, auth), pid, state, "ray-head")

        worker = [
            str(BIN / "ray"), "start", "--address", env["RAY_ADDRESS"],
            "--num-cpus", str(worker_cpus), "--resources", json.dumps({"dclr_worker": 1}),
            *node,
        ]  # fmt: skip
        pid = start(state, "ray-worker", worker, env)
        wait_for("Ray worker node", lambda: len(ray_nodes(env)) >= 2, pid, state, "ray-worker")
        # The dashboard answers before the head's job agent has registered with it; until then
        # a submission fails with "No available agent to submit job". Ready means a job ran.
        wait_for("Ray Jobs API", lambda: job_runs(env), pid, state, "ray-head")
    except BaseException:
        log("start-up failed: stopping what was started")
        down(state)
        raise
    return env


def create_bucket(env: dict[str, str]) -> None:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=BUCKET)
    log(f"bucket s3://{BUCKET} created")


def down(state: Path) -> None:
    services = read_state(state)["services"]
    for name in reversed(SERVICES):
        if name in services:
            stop(name, int(services[name]["pid"]))
    if services:
        write_state(state, {"services": {}})
        log("stopped")


def status(state: Path) -> int:
    services = read_state(state)["services"]
    if not services:
        print(f"nothing recorded in {state}")
        return 1
    for name, service in services.items():
        running = "running" if alive(service["pid"]) else "stopped"
        print(f"{name:11s} pid {service['pid']:>7}  {running}")
    return 0 if all(alive(s["pid"]) for s in services.values()) else 1


def exports(env: dict[str, str]) -> str:
    return "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--state", type=Path, default=default_state(), help="state directory")
    parser.add_argument("--head-cpus", type=int, default=2, help="logical CPUs of the head node")
    parser.add_argument(
        "--worker-cpus", type=int, default=2, help="logical CPUs of the worker node"
    )
    args = parser.parse_args(argv)
    state = args.state.resolve()
    if args.command == "up":
        env = up(state, args.head_cpus, args.worker_cpus)
        sys.stdout.write(exports(env))
        log(
            f'up; `eval "$({sys.executable} {__file__} env --state {state})"` sets this environment'
        )
        log(f"MLflow UI: {env['MLFLOW_TRACKING_URI']}")
        log(f"Ray dashboard and Jobs API: {env['RAY_API_SERVER_ADDRESS']}")
        return 0
    if args.command == "env":
        sys.stdout.write(exports(read_env(state)))
        return 0
    if args.command == "status":
        return status(state)
    down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
