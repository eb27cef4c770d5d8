"""The object-level chain on a toy SM cocktail written in the ADC2021 layout: import, combine
with a signal, SupCon pretraining on the process ids with 2-worker DDP, embedding, the SM
process probe (trained against the same encoder untrained) and NPLM on the embeddings and on
the 57 raw inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from distributed_clr.config import RayConfig, TrackingConfig, get_preset
from distributed_clr.data.adc import import_adc
from distributed_clr.data.combine import CombineError, combine
from distributed_clr.embed import embed
from distributed_clr.evaluate import classify, nplm
from distributed_clr.train import pretrain, untrained
from tests.data.test_adc import cocktail_events, four_lepton_events, write_adc

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def objects(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("objects")
    values, ids = cocktail_events(4_000, 1)
    cocktail = write_adc(root / "background_for_training.h5", values, ProcessID=ids)
    signal = write_adc(root / "Ato4l.h5", four_lepton_events(1_200, 2))
    import_adc(cocktail, root / "bkg", process="cocktail", label=0, process_dataset="ProcessID")
    import_adc(signal, root / "sig", process="Ato4l", label=1)
    combine([root / "bkg", root / "sig"], root / "all")
    return {"root": root, "bkg": root / "bkg", "sig": root / "sig", "all": root / "all"}


def test_combine_copies_every_shard_and_refuses_shared_names(objects: dict[str, Path]) -> None:
    from distributed_clr.storage.manifest import require_complete

    combined = require_complete(objects["all"], "objects")
    parts = [require_complete(objects[k], "objects") for k in ("bkg", "sig")]
    assert combined.rows == sum(p.rows for p in parts)
    assert sorted(s.sha256 for s in combined.shards) == sorted(
        s.sha256 for p in parts for s in p.shards
    )
    again = combine([objects["bkg"], objects["sig"]], objects["all"])  # a rerun reuses it
    assert again.complete
    assert again.rows == combined.rows
    with pytest.raises(CombineError, match="occurs in"):
        combine([objects["bkg"], objects["all"]], objects["root"] / "twice")


def _config(tmp: Path) -> Any:
    config = get_preset("paper_adc")
    return config.model_copy(
        update={
            "model": config.model.model_copy(update={"latent_dim": 8}),
            "train": config.train.model_copy(
                update={
                    "epochs": 4,
                    "batch_size": 256,
                    "schedule": config.train.schedule.model_copy(update={"warmup_epochs": 1}),
                }
            ),
            "ray": RayConfig(num_workers=2, num_cpus=4, storage_path=str(tmp / "ray")),
            "tracking": TrackingConfig(uri=f"sqlite:///{tmp / 'mlflow.db'}", system_metrics=False),
            "evaluate": config.evaluate.model_copy(update={"repeats": 1, "bootstrap": 50}),
        }
    )


def test_supcon_on_processes_learns_structure_that_nplm_can_use(
    objects: dict[str, Path], tmp_path: Path
) -> None:
    config = _config(tmp_path)
    result = pretrain(config, objects["bkg"], "objects-supcon", log_embeddings=False)
    assert result.epochs == 4
    assert np.isfinite(result.best_value)
    initial = untrained(config, objects["bkg"], tmp_path / "untrained")
    probes = {}
    for name, checkpoint in (("trained", result.best_checkpoint), ("untrained", initial)):
        embeddings = tmp_path / f"emb-{name}"
        embed(checkpoint, objects["all"], embeddings, config.ray, actors=1)
        summary = classify(
            config.evaluate, embeddings, objects["all"], tmp_path / f"classify-{name}"
        )
        probes[name] = summary["process_probe"]
        assert summary["results"]["latent/lct"]["aggregate"]["auc"]["mean"] > 0.5
    trained, initial_probe = probes["trained"]["latent"], probes["untrained"]["latent"]
    assert trained["processes"] == [0, 1, 2]
    assert trained["chance"] < 0.4
    # SupCon on the process ids separates the processes better than its initial weights
    assert trained["interval"][0] > initial_probe["interval"][1], (trained, initial_probe)

    nplm_config = config.nplm.model_copy(
        update={
            "feature_sets": ["latent", "event"],
            "toys": 8,
            "reference_events": 1_500,
            "data_events": 400,
            "signal_events": [60],
            "centers": 150,
        }
    )
    summary = nplm(
        nplm_config, tmp_path / "emb-trained", objects["all"], tmp_path / "nplm",
        ray_config=config.ray,
    )  # fmt: skip
    assert set(summary["results"]) == {"latent", "event"}  # the embedding and the 57 raw inputs
    for result in summary["results"].values():
        injected = result["signals"]["Ato4l"]["60"]
        assert injected["toys"] == 8
        assert injected["t_median"] > result["calibration"]["t0_median"]
