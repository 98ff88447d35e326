"""benchmarks.minigrid_memory_behaviour reads what a policy does on MiniGrid-MemoryS9: scripted policies whose
behaviour is known (walk to the end and guess; look back, then compare at the end) give the readings they must,
and a saved run's model is read through the same loop."""
from __future__ import annotations

import json

import pytest
import torch

from agents.config import AgentConfig
from agents.run import AgentRun, RunOptions
from benchmarks.minigrid_memory_behaviour import DOWN, UP, behaviour, load_run, main, play_episode, summarise
from envs.make import make_env

LEFT, RIGHT, FORWARD = 0, 1, 2  # minigrid's turn left / turn right / forward
EAST, WEST = 0, 2
ENV_KWARGS = dict(agent_view_size=3, max_steps=96, max_len=12)


def level():
    return make_env("MiniGrid-MemoryS9-v0", **ENV_KWARGS)


def turn_towards(level_state, direction: int) -> int:
    return LEFT if (level_state.agent_dir - direction) % 4 == 1 else RIGHT


def guesser(env):
    """Walk east to the junction, turn up, step forward: never looks back, never compares."""
    def choose(_obs, _start):
        s = env.unwrapped
        if s.agent_pos[0] < s.success_pos[0]:
            return FORWARD if s.agent_dir == EAST else turn_towards(s, EAST)
        return FORWARD if s.agent_dir == UP else turn_towards(s, UP)
    return choose


def solver(env):
    """Back to the start room until the object is in view, then east; at the junction face up, and if the object
    there is not the one seen, turn down (it reads the level's state where a policy reads its memory)."""
    seen = {}

    def choose(_obs, start):
        s = env.unwrapped
        if start:
            seen.clear()
        if "object" not in seen:
            if s.in_view(1, s.height // 2 - 1):
                seen["object"] = type(s.grid.get(1, s.height // 2 - 1))
            else:
                return FORWARD if s.agent_dir == WEST else turn_towards(s, WEST)
        if s.agent_pos[0] < s.success_pos[0]:
            return FORWARD if s.agent_dir == EAST else turn_towards(s, EAST)
        if "faced up" not in seen:
            if s.agent_dir != UP:
                return turn_towards(s, UP)
            seen["faced up"] = True
            up_object = type(s.grid.get(s.agent_pos[0], s.agent_pos[1] - 2))
            seen["go"] = UP if up_object is seen["object"] else DOWN
        return FORWARD if s.agent_dir == seen["go"] else turn_towards(s, seen["go"])
    return choose


def test_a_policy_that_never_looks_back_guesses_at_the_end():
    env = level()
    s = summarise([play_episode(env, guesser(env), seed) for seed in range(60)])
    assert s["faced_both_ends"] == 0
    assert 0.3 < s["success"] < 0.7
    # only a start in the room's first column has the object in view at once
    assert s["by_start_x"][1]["saw_start_object"] == 1 and s["by_start_x"][2]["saw_start_object"] == 0
    assert s["saw_start_object"] == pytest.approx(s["by_start_x"][1]["episodes"] / 60)


def test_a_policy_that_looks_back_and_compares_solves_every_episode():
    env = level()
    s = summarise([play_episode(env, solver(env), seed) for seed in range(60)])
    assert s["success"] == 1 and s["saw_start_object"] == 1 and s["success_when_seen"] == 1
    assert 0.2 < s["faced_both_ends"] < 0.8  # it turns down when the object up is the other one: about half


@pytest.mark.parametrize("algo", ["memory-ppo", "ppo"])  # an actor with memory, and one without
def test_the_command_reads_a_saved_runs_model(tmp_path, capsys, algo):
    memory = dict(memory_kwargs=dict(d_model=16, num_heads=2, dim_feedforward=32)) if algo == "memory-ppo" else {}
    config = AgentConfig(env_id="MiniGrid-MemoryS9-v0", algo=algo, encoder="fusion", n_envs=2,
                         env_kwargs=ENV_KWARGS, timesteps=64, eval_freq=64, eval_episodes=2,
                         algo_kwargs=dict(n_steps=32, batch_size=32, n_epochs=1),
                         encoder_kwargs=dict(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32),
                         policy_kwargs=memory)
    AgentRun(config, tmp_path / "run", RunOptions(seed=0, device="cpu")).run()
    out = main([str(tmp_path / "run"), "--episodes", "4", "--out", str(tmp_path / "b.json")])
    assert len(out) == 2 and all(s["episodes"] == 4 for s in out.values())
    assert json.loads((tmp_path / "b.json").read_text()).keys() == out.keys()
    assert "faced both end objects" in capsys.readouterr().out
    # sampled readings come from the evaluation protocol's own random stream: repeatable, the global one untouched
    model, env = load_run(tmp_path / "run")
    global_state = torch.get_rng_state()
    assert behaviour(model, env, 4, greedy=False) == behaviour(model, env, 4, greedy=False)
    assert torch.equal(torch.get_rng_state(), global_state)


def test_a_directory_without_a_finished_run_is_refused_before_any_work(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--episodes", "4"])
    assert exit_info.value.code == 2
