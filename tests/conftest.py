import os
import subprocess

import pytest
import torch

# Small models on 2 cores: one intra-op thread is faster and leaves the other core to a parallel worker.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def user_namespace_mounts() -> None:
    """Skips a test unless ``unshare -rm`` works (a user + mount namespace: a small tmpfs for a real full disk)."""
    try:
        works = subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        works = False
    if not works:
        pytest.skip("needs unshare -rm (a user + mount namespace) for a small tmpfs")


@pytest.fixture
def minari_made_dataset():
    """``minari_made_dataset(dataset_id, episodes=3, seed=0)``: a BabyAI-GoToRedBallGrey dataset of random turns made
    the way Minari's own BabyAI scripts make theirs (minigrid's raw env and spaces, the mission as a Text of
    Minari's charset) through minari.create_dataset_from_buffers, not the lab's writer (Minari's DataCollector
    needs jax, which the lab does not install). Set MINARI_DATASETS_PATH to a temporary directory first."""
    import gymnasium as gym
    import minari
    import minigrid  # noqa: F401  (registers the BabyAI levels)
    import numpy as np
    from gymnasium import spaces
    from gymnasium.spaces.text import alphanumeric
    from minari.data_collector import EpisodeBuffer

    def make(dataset_id: str, episodes: int = 3, seed: int = 0) -> minari.MinariDataset:
        env = gym.make("BabyAI-GoToRedBallGrey-v0")
        space = spaces.Dict({"direction": env.observation_space["direction"], "image": env.observation_space["image"],
                             "mission": spaces.Text(256, charset=str(alphanumeric) + " ")})
        rng = np.random.default_rng(seed)
        buffers = []
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            observations, actions, rewards, terminations, truncations = [obs], [], [], [], []
            while not (terminations and (terminations[-1] or truncations[-1])):
                action = int(rng.integers(3))  # left, right, forward
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(reward)
                terminations.append(terminated)
                truncations.append(truncated)
            stacked = {"image": np.stack([o["image"] for o in observations]),
                       "direction": np.asarray([o["direction"] for o in observations]),
                       "mission": [o["mission"] for o in observations]}
            buffers.append(EpisodeBuffer(seed=seed + i, observations=stacked, actions=actions, rewards=rewards,
                                         terminations=terminations, truncations=truncations))
        return minari.create_dataset_from_buffers(dataset_id, buffers, env="BabyAI-GoToRedBallGrey-v0",
                                                  observation_space=space, algorithm_name="random turns",
                                                  eval_env="BabyAI-GoToRedBallGrey-v0", description="random turns",
                                                  author="test", author_email="test@example.org",
                                                  code_permalink="https://example.org")

    return make


class _InterruptedFile:
    """A file whose ``write`` number ``at`` raises ``error``, as a signal handler that raises does when its signal
    lands while torch.save is writing a checkpoint."""

    def __init__(self, f, at: int, error: BaseException) -> None:
        self.f, self.at, self.error, self.calls = f, at, error, 0

    def write(self, data):
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return self.f.write(data)

    def flush(self):
        return self.f.flush()


@pytest.fixture
def interrupted_file():
    """``interrupted_file(f, at, error)``: ``f`` whose write number ``at`` raises ``error`` (see _InterruptedFile)."""
    return _InterruptedFile
