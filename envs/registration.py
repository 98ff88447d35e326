"""The ``lab/`` Gymnasium ids. Entry points are strings, so registering imports neither minigrid nor the data."""
from __future__ import annotations

from typing import Any

import gymnasium as gym

# Levels of the BabyAI paper's sample-efficiency table that the experiments use; any other level works
# through envs.babyai.make_babyai_env(level).
# The BabyAI paper's ladder, easiest first (its Table 3): each registered as lab/<level> with the lab's wrapper.
BABYAI_LEVELS = ("BabyAI-GoToRedBallGrey-v0", "BabyAI-GoToRedBall-v0", "BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0",
                 "BabyAI-PutNextLocal-v0", "BabyAI-GoTo-v0")

ENV_SPECS: dict[str, dict[str, Any]] = {
    "lab/DigitsBandit-v0": {"entry_point": "envs.bandit:DigitsBanditEnv"},
    "lab/Mnist1dBandit-v0": {"entry_point": "envs.bandit:Mnist1dBanditEnv"},
    # Same limits as gymnasium's CartPole-v1.
    "lab/CartPoleNoVel-v1": {
        "entry_point": "envs.cartpole:CartPoleNoVelEnv", "max_episode_steps": 500, "reward_threshold": 475.0,
    },
    "lab/CartPoleNoVelHistory-v1": {
        "entry_point": "envs.cartpole:make_cartpole_novel_history",
        "max_episode_steps": 500,
        "reward_threshold": 475.0,
        "kwargs": {"k": 8},
    },
    # BabyAI levels end their episodes themselves (max_steps depends on the level), so no TimeLimit here.
    **{
        f"lab/{level}": {"entry_point": "envs.babyai:make_babyai_env", "kwargs": {"level": level}}
        for level in BABYAI_LEVELS
    },
}


def register_envs() -> list[str]:
    """Register every ``lab/`` id that is not registered yet; safe to call any number of times."""
    for env_id, spec in ENV_SPECS.items():
        if env_id not in gym.registry:  # gymnasium warns when an id is registered twice
            gym.register(id=env_id, **spec)
    return list(ENV_SPECS)
