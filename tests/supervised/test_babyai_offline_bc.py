"""Behaviour cloning from any fitting Minari dataset (one made with Minari's own tools included) and filtered
behaviour cloning (%BC) of mixed-quality data."""
from __future__ import annotations

import numpy as np
import pytest

from envs.minari_io import write_minari
from supervised.babyai_bc import BabyAIBCConfig, BabyAIBCTask, BCDataConfig, BCEvalConfig, BCModelConfig
from supervised.logger import read_metrics
from supervised.train import main
from supervised.trainer import fit

pytestmark = pytest.mark.usefixtures("minari_root")  # datasets and their caches under tmp_path
TINY_ENCODER = BCModelConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32)


def test_bc_trains_on_a_dataset_made_with_minaris_own_tools(tmp_path, minari_made_dataset, offline_train):
    minari_made_dataset("other/grey/random-turns-v0", episodes=4)
    config = BabyAIBCConfig(train=offline_train(tmp_path, max_steps=25, batch_size=32), model=TINY_ENCODER,
                            data=BCDataConfig(minari_dataset="other/grey/random-turns-v0", demos=100),
                            eval=BCEvalConfig(episodes=4, num_envs=4))
    result = fit(BabyAIBCTask(config))
    losses = [r["train_loss"] for r in read_metrics(result.run_dir, "train")]
    assert losses[-1] < 0.8 * losses[0]  # 7 actions -> the 3 the turns use
    m = result.metrics
    assert m["minari_dataset"] == "other/grey/random-turns-v0" and m["demo_episodes"] == 4
    assert m["demo_sources"] == {"random turns": 4} and "success_rate" in m


def test_filtered_bc_clones_the_top_fraction_by_return(tmp_path, mixture, offline_train):
    write_minari("lab/grey/mixed-v0", mixture)
    data = BCDataConfig(minari_dataset="lab/grey/mixed-v0", demos=1000, top_fraction=0.25)
    task = BabyAIBCTask(BabyAIBCConfig(train=offline_train(tmp_path), model=TINY_ENCODER, data=data))
    train = task.load_data().train
    best = np.sort(mixture.reward)[-6:]
    assert task.demo_info["kept_episodes"] == 6 and task.demo_info["kept_mean_return"] == pytest.approx(best.mean())
    assert len(train) == mixture.select(np.argsort(-mixture.reward, kind="stable")[:6]).num_steps
    assert task.demo_info["demo_sources"] == {"bot": 12, "random": 12}
    assert task.run_label() == "lab-grey-mixed-v0_top0.25"


def test_the_command_line_names_a_minari_dataset_and_refuses_one_that_does_not_fit(tmp_path, capsys,
                                                                                minari_made_dataset):
    minari_made_dataset("other/grey/random-turns-v0", episodes=2)
    args = ["babyai_bc", "--data.minari-dataset", "other/grey/random-turns-v0", "--data.level",
            "BabyAI-GoToRedBall-v0", "--train.out-dir", str(tmp_path / "runs"), "--train.quiet"]
    assert main(args) == 2
    assert "collected on BabyAI-GoToRedBallGrey-v0, not on BabyAI-GoToRedBall-v0" in capsys.readouterr().err
    assert main(["babyai_bc", "--data.minari-dataset", "no/such-v0", "--train.out-dir", str(tmp_path / "runs"),
                 "--train.quiet"]) == 2
    assert "cannot learn from Minari dataset 'no/such-v0'" in capsys.readouterr().err
