"""Shared helpers for the envs tests."""
from __future__ import annotations

import warnings

import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

# Warnings the checkers emit for choices documented in envs/ (anything else fails the test):
ALLOWED_WARNINGS = (
    "is different from the unwrapped version",  # gymnasium: we check the env as users get it, wrappers included
    "minimal resolution for an image is 36x36",  # SB3: 8x8 digits / 7x7 BabyAI grids, custom extractors needed
    "bounds are not in [0, 255]",  # SB3: BabyAI image holds symbolic indices, deliberately not an SB3 image
    "unconventional shape",  # SB3: HistoryWrapper's (K, obs_dim) history
)


def _check_env_both(env) -> list[str]:
    """Run gymnasium's and SB3's env checkers; fail on errors and on undocumented warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gymnasium_check_env(env, skip_render_check=True)  # rendering is the wrapped envs' own business
        sb3_check_env(env, warn=True)
    messages = [str(w.message) for w in caught]
    unexpected = [m for m in messages if not any(allowed in m for allowed in ALLOWED_WARNINGS)]
    assert not unexpected, unexpected
    return messages


@pytest.fixture
def check_env_both():
    """``check_env_both(env)``: both env checkers, failing on errors and undocumented warnings."""
    return _check_env_both
