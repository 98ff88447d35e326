"""The resume checkpoint of an RL run: one file, written atomically, from which training continues.

It holds the model zip (policy, optimizer state, step and update counters, the last observations and episode
buffers SB3 keeps), the training envs themselves when they live in this process (``DummyVecEnv``: every
episode in progress continues where it was), the ``VecNormalize`` statistics, the torch / numpy / Python random
states and the run's own counters (the evaluation curve so far, episodes, wall time). Taken only between two
rollouts, after an update, so no half-filled rollout buffer needs saving.

What is bit-identical after a resume (CPU, the same versions): with ``vec_env="dummy"`` everything - the
remaining updates, every later evaluation, the final model and results.json's numbers (wall times aside).
With ``vec_env="subproc"`` the envs live in other processes and cannot be saved: the resumed run resets them
(seeded ``seed + steps so far``), so the episodes in progress at the checkpoint are lost and later numbers
differ from an uninterrupted run's; results.json lists each resume and whether it was exact. On CUDA the random
states are restored too, but CUDA kernels are not bit-deterministic: a resumed GPU run continues faithfully, not
identically, and is recorded as not exact.
"""
from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecNormalize

from agents.memory import EpisodeState
from lab.io import atomic_write

CHECKPOINT_FILE = "resume.pkl"
FORMAT = 2  # 2: the episode state an algorithm declares (agents.memory.EpisodeState), the run's progress a dataclass


class DamagedCheckpointError(ValueError):
    """A resume checkpoint that cannot be read (truncated, not a checkpoint, another format)."""


def save_checkpoint(path: Path, model: BaseAlgorithm, run_state: dict[str, Any]) -> Path:
    """Write the checkpoint of ``model`` and the run's ``run_state`` to ``path`` (atomically)."""
    buffer = io.BytesIO()
    model.save(buffer)
    env = model.get_env()
    stats = model.get_vec_normalize_env()
    base = stats.venv if stats is not None else env
    payload = {
        "format": FORMAT,
        "model": buffer.getvalue(),
        "env": cloudpickle.dumps(base) if isinstance(base, DummyVecEnv) else None,
        "vecnormalize": pickle.dumps(stats) if stats is not None else None,  # VecNormalize pickles without its venv
        # the memory of the episodes in progress that RecurrentPPO (LSTM states) and MemoryPPO (its cache) leave
        # out of their zips: saved beside them, so those runs continue exactly too
        "memory": model.episode_state() if isinstance(model, EpisodeState) else {},
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "random": random.getstate(),
                "action_space": model.action_space.np_random.bit_generator.state,
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},  # SB3 samples there
        "run": run_state,
    }
    return atomic_write(path, lambda f: pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's contents; a damaged file raises :class:`DamagedCheckpointError` naming it."""
    try:
        with open(path, "rb") as f:
            payload = pickle.load(f)
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - truncated or garbage files fail in many ways inside pickle
        reason = " ".join(str(error).split())  # one line: some of pickle's messages span two
        raise DamagedCheckpointError(f"{path} is damaged and cannot be resumed from ({type(error).__name__}: "
                                     f"{reason}); start the run again") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DamagedCheckpointError(f"{path} is not a resume checkpoint of this version of the lab")
    missing = sorted({"model", "env", "vecnormalize", "memory", "rng", "run"} - set(payload))
    if missing:
        raise DamagedCheckpointError(f"{path} is damaged: it lacks {', '.join(missing)}; start the run again")
    return payload


def restore_model(payload: dict[str, Any], algo_class: type[BaseAlgorithm], make_env: Any, device: Any,
                  reset_seed: int) -> tuple[BaseAlgorithm, bool]:
    """``(model, exact)``: the model with its envs (the saved ones when there are, else fresh ones from
    ``make_env()`` reset with ``reset_seed``) and the random states of the moment the checkpoint was taken;
    ``exact``: the run continues bit-identically (saved envs, on the CPU)."""
    exact = payload["env"] is not None
    env: VecEnv = cloudpickle.loads(payload["env"]) if exact else make_env()
    if payload["vecnormalize"] is not None:
        stats: VecNormalize = pickle.loads(payload["vecnormalize"])
        stats.set_venv(env)
        env = stats
    # force_reset=False keeps the last observations of the saved envs; fresh envs are reset by learn(). load()
    # reseeds every generator: the saved states are restored below.
    model = algo_class.load(io.BytesIO(payload["model"]), env=env, device=device, force_reset=not exact)
    if exact:
        if isinstance(model, EpisodeState):
            model.set_episode_state(payload["memory"])
    else:
        model.set_random_seed(reset_seed)
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["random"])
    if rng.get("cuda") and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    model.action_space.np_random.bit_generator.state = rng["action_space"]
    return model, exact and model.device.type == "cpu"
