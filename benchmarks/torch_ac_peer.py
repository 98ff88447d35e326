"""The field's starter code as a peer: torch-ac 1.4.0's PPO with rl-starter-files' ``ACModel``, envs in-process.

The model is written here from rl-starter-files' description (github.com/lcswillems/rl-starter-files, ``model.py``
and ``utils/format.py`` at 317da04, the version that pins torch-ac 1.4.0), not copied: a conv net over the 7 x 7
x 3 view (2x2 conv 16, ReLU, 2x2 max-pool, 2x2 conv 32, ReLU, 2x2 conv 64, ReLU: 64 features), word embeddings
of 32 and a GRU of 128 over the mission (``--text``), actor and critic MLPs of 64 with tanh, Linear weights drawn
N(0, 1) with each row scaled to unit norm and zero biases. 101,176 parameters on BabyAI's view with a 100-word
vocabulary. Its observations are preprocessed as its ``get_obss_preprocessor`` does: the raw image as floats (no
one-hot, no scaling) and the mission's lower-case words as ids from a vocabulary that grows as words appear.

torch-ac's ``ParallelEnv`` steps ``envs[1:]`` in forked processes; :class:`InProcessEnvs` has its interface and
steps every env in this process (what the lab's ``DummyVecEnv`` does), so both sides pay for their envs in the CPU
time of one process. torch_ac is an optional dependency (``pip install -e ".[bench]"``): only
:func:`make_peer` imports it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from envs.babyai import is_success, silence_stdout

VOCAB_CAPACITY = 100  # rl-starter-files' obs_space["text"]: the word embedding's rows
# rl-starter-files' scripts/train.py PPO defaults (recurrence 1: no memory LSTM on this level; --text: the GRU).
PEER_PPO = dict(frames_per_proc=128, discount=0.99, lr=1e-3, gae_lambda=0.95, entropy_coef=0.01, value_loss_coef=0.5,
                max_grad_norm=0.5, recurrence=1, adam_eps=1e-8, clip_eps=0.2, epochs=4, batch_size=256)
PEER_PROCS = 16  # --procs
PEER_ENV_SEED_STRIDE = 10_000  # env i of a run with seed s is reset with s + 10000 i (rl-starter-files' train.py)
_WORDS = re.compile(r"([a-z]+)")


class Vocabulary:
    """Word -> id (1, 2, ... in order of first sight; 0 pads), at most ``capacity`` words."""

    def __init__(self, capacity: int = VOCAB_CAPACITY) -> None:
        self.capacity, self.ids = capacity, {}

    def __getitem__(self, word: str) -> int:
        if word not in self.ids:
            if len(self.ids) >= self.capacity:
                raise ValueError(f"the vocabulary is full ({self.capacity} words); cannot add {word!r}")
            self.ids[word] = len(self.ids) + 1
        return self.ids[word]


class ObservationBatch(dict):
    """torch-ac's ``DictList`` contract: ``batch.image``, ``batch.text`` and ``batch[index]`` for minibatches."""

    __getattr__ = dict.__getitem__

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return dict.__getitem__(self, index)
        return ObservationBatch({key: value[index] for key, value in self.items()})

    def __len__(self) -> int:
        return len(next(iter(self.values())))


class Preprocessor:
    """List of minigrid observations -> ObservationBatch(image (B, 7, 7, 3) float, text (B, L) long)."""

    def __init__(self) -> None:
        self.vocab = Vocabulary()

    def __call__(self, observations: Sequence[dict[str, Any]], device: Any = None) -> ObservationBatch:
        images = torch.tensor(np.array([obs["image"] for obs in observations]), device=device, dtype=torch.float)
        return ObservationBatch(image=images, text=self.texts([obs["mission"] for obs in observations], device))

    def texts(self, missions: Sequence[str], device: Any = None) -> Tensor:
        ids = [[self.vocab[word] for word in _WORDS.findall(mission.lower())] for mission in missions]
        out = np.zeros((len(ids), max(map(len, ids))), dtype=np.int64)
        for row, words in enumerate(ids):
            out[row, :len(words)] = words
        return torch.tensor(out, device=device)


def _unit_rows(module: nn.Module) -> None:
    """rl-starter-files' init of every Linear: weights N(0, 1) with unit-norm rows, zero biases."""
    if isinstance(module, nn.Linear):
        with torch.no_grad():
            module.weight.normal_(0, 1)
            module.weight /= module.weight.norm(dim=1, keepdim=True)
            if module.bias is not None:
                module.bias.zero_()


class StarterACModel(nn.Module):
    """rl-starter-files' ``ACModel(use_memory=False, use_text=True)``: see the module docstring.

    torch-ac treats it as recurrent (it subclasses ``RecurrentACModel`` in rl-starter-files): ``forward(obs,
    memory)`` returns ``(dist, value, memory)`` with the memory passed through unchanged.
    """

    recurrent = True

    def __init__(self, view: tuple[int, int] = (7, 7), num_actions: int = 7, vocab: int = VOCAB_CAPACITY) -> None:
        super().__init__()
        self.image_conv = nn.Sequential(
            nn.Conv2d(3, 16, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 2), nn.ReLU(), nn.Conv2d(32, 64, 2),
            nn.ReLU(),
        )
        self.image_features = ((view[0] - 1) // 2 - 2) * ((view[1] - 1) // 2 - 2) * 64
        self.word_embedding = nn.Embedding(vocab, 32)
        self.text_rnn = nn.GRU(32, 128, batch_first=True)
        width = self.image_features + 128
        self.actor = nn.Sequential(nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, num_actions))
        self.critic = nn.Sequential(nn.Linear(width, 64), nn.Tanh(), nn.Linear(64, 1))
        self.apply(_unit_rows)

    @property
    def memory_size(self) -> int:
        return 2 * self.image_features  # the LSTM state it would carry with use_memory (unused here)

    def logits_and_value(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """image (B, H, W, 3) float, text (B, L) ids -> (log-probabilities (B, A), value (B,))."""
        x = self.image_conv(image.permute(0, 3, 1, 2)).flatten(1)  # channel-last view -> (B, 64)
        _, hidden = self.text_rnn(self.word_embedding(text))  # hidden (1, B, 128): the GRU's last state
        embedding = torch.cat([x, hidden[-1]], dim=1)
        return torch.log_softmax(self.actor(embedding), dim=1), self.critic(embedding).squeeze(1)

    def forward(self, obs: ObservationBatch, memory: Tensor) -> tuple[Categorical, Tensor, Tensor]:
        logits, value = self.logits_and_value(obs.image, obs.text)
        return Categorical(logits=logits), value, memory


class InProcessEnvs:
    """torch-ac's ``ParallelEnv`` interface (reset -> list of observations; step -> zip of (obs, reward,
    terminated, truncated, info) per env, an ended env reset at once), every env stepped in this process."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        if not envs:
            raise ValueError("InProcessEnvs needs at least one env")
        self.envs = list(envs)
        self.observation_space, self.action_space = self.envs[0].observation_space, self.envs[0].action_space

    def reset(self) -> list[dict[str, Any]]:
        return [env.reset()[0] for env in self.envs]

    def step(self, actions: Sequence[int]):
        results = []
        for env, action in zip(self.envs, actions):
            obs, reward, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
            results.append((obs, reward, terminated, truncated, info))
        return zip(*results)


class SuccessInfo(gym.Wrapper):
    """A raw minigrid level that says ``info["is_success"]`` at episode ends (what :mod:`envs.evaluation` reads)
    and keeps the "Sampling rejected" lines of some levels off stdout; observations untouched."""

    def reset(self, **kwargs: Any):
        with silence_stdout():
            return self.env.reset(**kwargs)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info["is_success"] = is_success(reward, terminated)
        return obs, reward, terminated, truncated, info


def make_peer_env(level: str, seed: int | None = None) -> gym.Env:
    """rl-starter-files' ``utils.make_env``: ``gym.make(level)`` reset once with ``seed``."""
    import minigrid  # noqa: F401  (registers the BabyAI levels)

    env = SuccessInfo(gym.make(level))
    if seed is not None:
        env.reset(seed=seed)
    return env


def _import_torch_ac() -> tuple[Any, Any]:
    """torch-ac's algorithm module and ``PPOAlgo``. Importing torch-ac 1.4.0 calls
    ``multiprocessing.set_start_method("fork")``, which fails once a start method is set and would change this
    process's otherwise; its processes are never started here (:class:`InProcessEnvs`), so the call is skipped."""
    import multiprocessing

    original = multiprocessing.set_start_method
    multiprocessing.set_start_method = lambda *args, **kwargs: None
    try:
        import torch_ac.algos.base as torch_ac_base
        from torch_ac import PPOAlgo
    except ImportError as error:
        raise ImportError("the peer needs torch-ac: pip install -e \".[bench]\" (torch-ac==1.4.0)") from error
    finally:
        multiprocessing.set_start_method = original
    return torch_ac_base, PPOAlgo


def make_peer(level: str, seed: int, procs: int = PEER_PROCS, **ppo: Any) -> Any:
    """torch-ac's ``PPOAlgo`` with :class:`StarterACModel` on ``procs`` in-process envs of ``level``, seeded as
    rl-starter-files' train.py seeds (``seed`` for random / numpy / torch, ``seed + 10000 i`` for env i)."""
    import random

    torch_ac_base, PPOAlgo = _import_torch_ac()

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    envs = [make_peer_env(level, seed + PEER_ENV_SEED_STRIDE * i) for i in range(procs)]
    settings = {**PEER_PPO, **ppo}
    frames_per_proc = settings.pop("frames_per_proc")
    model = StarterACModel(envs[0].observation_space["image"].shape[:2], int(envs[0].action_space.n))
    torch_ac_base.ParallelEnv = InProcessEnvs  # torch-ac would fork a process per env; this keeps them here
    return PPOAlgo(envs, model, torch.device("cpu"), frames_per_proc, preprocess_obss=Preprocessor(), **settings)


def peer_logits(algo: Any):
    """``observations -> log-probabilities`` of the peer's policy on a batch stacked by :func:`envs.evaluation.stack`
    (image (B, 7, 7, 3), mission (B,) strings), for :func:`envs.evaluation.logits_actor` with ``device=None``."""
    preprocess, model = algo.preprocess_obss, algo.acmodel

    def logits(observations: dict[str, np.ndarray]) -> Tensor:
        image = torch.as_tensor(observations["image"], dtype=torch.float)
        return model.logits_and_value(image, preprocess.texts([str(m) for m in observations["mission"]]))[0]

    return logits
