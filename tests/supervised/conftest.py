"""Tiny configs of the supervised tasks: a few optimizer steps of small nets, so each run takes well under a second."""
import pytest

from envs.demos import collect_trajectories
from envs.trajectories import concat_demos, load_demos

from supervised.digits import DigitsConfig, DigitsNetConfig
from supervised.mnist1d import Mnist1dConfig, Mnist1dDataConfig, PatchTransformerConfig
from supervised.configs import TrainConfig


def tiny_train(tmp_path, **overrides) -> TrainConfig:
    settings = dict(max_steps=6, batch_size=32, lr=3e-3, log_every=2, out_dir=str(tmp_path), run_name="run",
                    quiet=True, num_threads=1, device="cpu")
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture
def make_mnist1d(tmp_path):
    """``make_mnist1d(data={...}, **train_fields)``: a 1-layer width-16 patch transformer, every augmentation on."""

    def make(data: dict | None = None, **train) -> Mnist1dConfig:
        model = PatchTransformerConfig(window=8, stride=4, d_model=16, num_heads=2, num_layers=1, dim_feedforward=32)
        # val_fraction stays at its default so every test shares lab.data's cached MNIST-1D splits
        data_config = Mnist1dDataConfig(**{"shift": 3, "scale": 0.1, "noise": 0.05, **(data or {})})
        return Mnist1dConfig(train=tiny_train(tmp_path, **train), model=model, data=data_config)

    return make


@pytest.fixture
def make_digits(tmp_path):
    """``make_digits(block="separable", **train_fields)``: a two-stage conv net of 8 and 16 channels."""

    def make(block: str = "separable", **train) -> DigitsConfig:
        model = DigitsNetConfig(block=block, channels=(8, 16), strides=(1, 2), dropout=0.0)
        return DigitsConfig(train=tiny_train(tmp_path, **train), model=model)

    return make


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    """Minari datasets under tmp_path (never ~/.minari), and the working directory there: the shard cache of a
    read Minari dataset goes to ./data/minari."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "minari"


@pytest.fixture(scope="session")
def mixture(tmp_path_factory):
    """A mixed-quality BabyAI-GoToRedBallGrey set: 12 bot episodes, then 12 random ones (long, mostly failures)."""
    root = tmp_path_factory.mktemp("mixture")
    collect_trajectories("BabyAI-GoToRedBallGrey-v0", 12, root / "bot", "bot", seed=5, progress=False)
    collect_trajectories("BabyAI-GoToRedBallGrey-v0", 12, root / "random", "random", seed=6, progress=False)
    return concat_demos([load_demos(root / "bot"), load_demos(root / "random")])


@pytest.fixture
def offline_train(tmp_path):
    """``offline_train(tmp_path, **fields)``: a few steps of small batches on the CPU, quiet, in tmp_path/runs."""

    def make(root, **overrides) -> TrainConfig:
        settings = dict(max_steps=6, batch_size=16, lr=3e-3, log_every=1, out_dir=str(root / "runs"),
                        run_name="run", quiet=True, num_threads=1, device="cpu", warmup_fraction=0.0)
        return TrainConfig(**{**settings, **overrides})

    return make
