"""The cluster files parse, and the commands they run are valid ``dclr`` command lines."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from distributed_clr.cli import build_parser
from distributed_clr.cli.options import config_from

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_cluster_yaml_files_parse() -> None:
    files = sorted(CLUSTER.glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_rayjob_entrypoint_is_a_valid_dclr_command() -> None:
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "dclr"
    args = build_parser().parse_args(argv[1:])
    assert args.handler.__name__ == "_cmd_pretrain"
    assert args.workers == 4
    assert args.gpu
    # Every key it sets exists (renamed keys would fail here, naming their new place).
    config = config_from(args)
    assert config.ray.num_workers == 4
    assert config.ray.use_gpu
    assert config.train.optimizer.name == "lars"
