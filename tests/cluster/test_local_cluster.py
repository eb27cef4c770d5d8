"""The cluster path for real: a two-node Ray cluster, an S3 server and an MLflow server on this
machine (``cluster/local_cluster.py``), jobs submitted with ``ray job submit`` and the shipped
working directory, data and checkpoints on ``s3://``, results read back from the tracking
server.

Run with ``make test-cluster`` (a few minutes on two cores). Everything the cluster started is
stopped at the end of the module, also when a test fails; the last test checks that by process
id.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RUN = "cluster-pretrain"
SWEEP = "cluster-sweep"


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "local_cluster", ROOT / "cluster" / "local_cluster.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


local_cluster = _load_script()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("local-cluster")
    try:
        env = local_cluster.up(state, head_cpus=2, worker_cpus=2)
        yield {"state": state, "env": env, "pids": _pids(state)}
    finally:
        local_cluster.down(state)


def _pids(state: Path) -> dict[str, int]:
    services = local_cluster.read_state(state)["services"]
    return {name: int(service["pid"]) for name, service in services.items()}


def _environ(cluster: dict[str, Any]) -> dict[str, str]:
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, **cluster["env"], "PATH": path}


def submit(cluster: dict[str, Any], *command: str) -> subprocess.CompletedProcess[str]:
    """``ray job submit`` of ``command`` from the repository root, its logs streamed back."""
    return subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--runtime-env",
            str(ROOT / "cluster" / "runtime_env.yaml"),
            "--",
            *command,
        ],
        cwd=ROOT,
        env=_environ(cluster),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def ray_list(cluster: dict[str, Any], what: str, *filters: str) -> list[dict[str, Any]]:
    args = [arg for f in filters for arg in ("--filter", f)]
    result = subprocess.run(
        [str(BIN / "ray"), "list", what, *args, "--detail", "--format", "json", "--limit", "1000"],
        env=_environ(cluster),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    listing: list[dict[str, Any]] = json.loads(result.stdout[result.stdout.index("[") :])
    return listing


def mlflow_client(cluster: dict[str, Any]) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=cluster["env"]["MLFLOW_TRACKING_URI"])


def run_named(cluster: dict[str, Any], name: str) -> Any:
    client = mlflow_client(cluster)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`dclr.run_name` = '{name}'",
    )
    assert runs, f"no MLflow run named {name} on the tracking server"
    return runs[0]


def s3_keys(cluster: dict[str, Any], prefix: str) -> list[str]:
    import pyarrow.fs as pafs

    env = cluster["env"]
    filesystem = pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=env["AWS_ENDPOINT_URL"],
        region=env["AWS_DEFAULT_REGION"],
    )
    selector = pafs.FileSelector(
        f"{env['DCLR_S3_BUCKET']}/{prefix}", recursive=True, allow_not_found=True
    )
    return [
        info.path for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File
    ]


def _check(result: subprocess.CompletedProcess[str], what: str) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{what} failed ({result.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="module")
def prepared(cluster: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    """Generated QCD and W' events (tasks on the cluster), prepared by a job into S3."""
    raw = tmp_path_factory.mktemp("raw")
    for process, seed in (("qcd_dijet", 1), ("wprime_xy", 2)):
        generate = subprocess.run(
            [
                str(BIN / "dclr"),
                "generate",
                "--process",
                process,
                "--events",
                "240",
                "--shards",
                "2",
                "--seed",
                str(seed),
                "--out",
                str(raw / process),
                "--preset",
                "debug",
            ],
            env=_environ(cluster),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        _check(generate, f"generate {process}")
    uri = f"s3://{cluster['env']['DCLR_S3_BUCKET']}/prepared"
    output = _check(
        submit(
            cluster,
            "dclr",
            "prepare",
            str(raw / "qcd_dijet"),
            str(raw / "wprime_xy"),
            "--out",
            uri,
            "--preset",
            "debug",
        ),
        "the prepare job",
    )
    assert f"{uri}: " in output
    assert "dijet events" in output
    assert any(key.endswith("manifest.json") for key in s3_keys(cluster, "prepared"))
    return uri


def test_the_cluster_has_two_nodes_with_their_own_resources(cluster: dict[str, Any]) -> None:
    nodes = ray_list(cluster, "nodes", "state=ALIVE")
    custom = sorted(k for node in nodes for k in node["resources_total"] if k.startswith("dclr_"))
    assert custom == ["dclr_head", "dclr_worker"]


def test_pretrain_job_trains_on_both_nodes_from_s3(cluster: dict[str, Any], prepared: str) -> None:
    bucket = cluster["env"]["DCLR_S3_BUCKET"]
    result = submit(
        cluster,
        "dclr",
        "pretrain",
        "--data",
        prepared,
        "--preset",
        "debug",
        "--run-name",
        RUN,
        "--set",
        "train.epochs=2",
        "--set",
        "ray.num_workers=2",
        "--set",
        "ray.placement=STRICT_SPREAD",
        "--set",
        f"ray.storage_path=s3://{bucket}/ray_results",
    )
    output = _check(result, "the pretrain job")
    # The job's own output streamed back through `ray job submit`, with the run's UI URL.
    assert f"run {RUN}: 2 epochs" in output
    assert f"{cluster['env']['MLFLOW_TRACKING_URI']}/#/experiments/" in output

    # Where the two ranks ran: one on each node.
    workers = ray_list(cluster, "actors", "class_name=RayTrainWorker")
    nodes = {n["node_id"]: n for n in ray_list(cluster, "nodes")}
    used = sorted(
        next(k for k in nodes[w["node_id"]]["resources_total"] if k.startswith("dclr_"))
        for w in workers
    )
    assert used == ["dclr_head", "dclr_worker"], used

    # Checkpoints in object storage; the run's history and artifacts on the tracking server.
    assert any(k.endswith("state.pt") for k in s3_keys(cluster, f"ray_results/{RUN}"))
    run = run_named(cluster, RUN)
    client = mlflow_client(cluster)
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"checkpoint", "config.yaml"}
    assert s3_keys(cluster, "mlflow-artifacts"), "the server keeps no artifacts in S3"


def test_a_failing_job_fails_with_the_commands_message(cluster: dict[str, Any]) -> None:
    bucket = cluster["env"]["DCLR_S3_BUCKET"]
    result = submit(
        cluster, "dclr", "pretrain", "--data", f"s3://{bucket}/no-such-dataset", "--preset", "debug"
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "does not exist" in output
    assert "no-such-dataset" in output
    jobs = ray_list(cluster, "jobs")
    assert any(j["status"] == "FAILED" and "no-such-dataset" in j["entrypoint"] for j in jobs)


def test_sweep_job_runs_two_trials(cluster: dict[str, Any], prepared: str) -> None:
    bucket = cluster["env"]["DCLR_S3_BUCKET"]
    result = submit(
        cluster,
        "dclr",
        "tune",
        "--space",
        "tune_spaces/temperature_latent.yaml",
        "--data",
        prepared,
        "--name",
        SWEEP,
        "--search",
        "random",
        "--samples",
        "2",
        "--scheduler",
        "none",
        "--preset",
        "debug",
        "--workers",
        "1",
        "--set",
        "train.epochs=1",
        "--set",
        f"ray.storage_path=s3://{bucket}/ray_results",
    )
    _check(result, "the sweep job")
    parent = run_named(cluster, SWEEP)
    client = mlflow_client(cluster)
    trials = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(trials) == 2
    assert all(t.info.status == "FINISHED" for t in trials)
    assert all("train_loss" in t.data.metrics for t in trials)


def test_embed_and_evaluate_jobs_read_s3(
    cluster: dict[str, Any], prepared: str, tmp_path: Path
) -> None:
    bucket = cluster["env"]["DCLR_S3_BUCKET"]
    embeddings = f"s3://{bucket}/embeddings"
    run_id = run_named(cluster, RUN).info.run_id
    _check(
        submit(cluster, "dclr", "embed", "--run", run_id, "--data", prepared, "--out", embeddings),
        "the embed job",
    )
    assert any(k.endswith(".parquet") for k in s3_keys(cluster, "embeddings"))
    output = _check(
        submit(
            cluster,
            "dclr",
            "evaluate",
            "classify",
            "--embeddings",
            embeddings,
            "--data",
            prepared,
            "--out",
            str(tmp_path / "classify"),
            "--preset",
            "debug",
        ),
        "the evaluate job",
    )
    assert "latent" in output
    assert "AUC" in output
    client = mlflow_client(cluster)
    evaluations = client.search_runs(
        [run_named(cluster, RUN).info.experiment_id],
        filter_string=f"tags.`dclr.kind` = 'evaluate' and tags.`mlflow.parentRunId` = '{run_id}'",
    )
    assert evaluations, "the evaluation is not on the tracking server under its encoder's run"
    assert any(key.endswith("auc") or "auc" in key for key in evaluations[0].data.metrics)


def test_down_stops_every_process_it_started(cluster: dict[str, Any]) -> None:
    local_cluster.down(cluster["state"])
    still = [name for name, pid in cluster["pids"].items() if local_cluster.alive(pid)]
    assert still == []
    assert sorted(cluster["pids"]) == sorted(local_cluster.SERVICES)
