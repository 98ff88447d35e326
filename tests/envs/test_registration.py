import importlib
import subprocess
import sys
import warnings

import gymnasium as gym
import pytest

import envs
from envs.registration import ENV_SPECS, register_envs


def test_all_ids_registered_under_lab_namespace():
    for env_id in ENV_SPECS:
        assert env_id.startswith("lab/")
        assert env_id in gym.registry


def test_registration_is_idempotent_and_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gymnasium's "Overriding environment" would raise here
        register_envs()
        importlib.reload(envs)


def test_module_prefix_syntax_imports_envs_in_a_fresh_interpreter():
    code = "import gymnasium as gym; env = gym.make('envs:lab/CartPoleNoVel-v1'); print(env.observation_space.shape)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(2,)"


@pytest.mark.parametrize("env_id", sorted(ENV_SPECS))
def test_registered_env_passes_gymnasium_and_sb3_checkers(env_id, check_env_both):
    env = gym.make(env_id)
    check_env_both(env)
    env.close()


def test_import_envs_stays_light():
    code = "import sys, envs; print('minigrid' in sys.modules, 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]  # minigrid and lab (torch) load on first use
