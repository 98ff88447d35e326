"""What a policy does on MiniGrid's Memory levels, beyond its success rate: why a run sits at chance.

    python -m benchmarks.minigrid_memory_behaviour RUN_DIR [RUN_DIR ...] [--episodes 300]

A Memory level is solved by two behaviours: see the object in the start room (the agent starts anywhere from the
room to the end of the hallway, facing the hallway's end, so from most starts it must turn back to see it), then at
the end look at one of the two objects and, if it is not the one seen, turn to the other. A policy that does
neither walks to the end, turns one way and steps forward: success 0.5. Per episode this reads, from the level's
own state: where the agent started, whether the start-room object was ever in its view, whether it faced both end
objects, and the outcome. ``RUN_DIR``: an ``agents.run.AgentRun`` directory (``config.json``, ``model.zip``).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm

from agents.evaluation import sb3_actor
from agents.factory import load_agent
from agents.run import CONFIG_FILE, MODEL_FILE
from envs.evaluation import EVAL_SEED, Act, StatefulAct, stack
from envs.make import make_env

UP, DOWN = 3, 1  # minigrid's agent_dir values facing the two end objects from the junction
Choose = Callable[[Any, bool], int]  # (observation, episode_start) -> action


def play_episode(env: gym.Env, choose: Choose, seed: int) -> dict[str, Any]:
    """One episode of ``choose`` on a (wrapped) Memory level, read from the level's state."""
    obs, _ = env.reset(seed=seed)
    level = env.unwrapped
    start_object = (1, level.height // 2 - 1)  # where minigrid's MemoryEnv puts it
    junction_x = level.success_pos[0]
    start_x, saw, faced = int(level.agent_pos[0]), False, set()
    done, first, reward, steps = False, True, 0.0, 0
    while not done:
        saw = saw or bool(level.in_view(*start_object))
        if level.agent_pos[0] == junction_x and level.agent_dir in (UP, DOWN):
            faced.add(level.agent_dir)
        obs, reward, terminated, truncated, _ = env.step(choose(obs, first))
        first, done, steps = False, terminated or truncated, steps + 1
    return {"start_x": start_x, "saw_start_object": saw, "faced_both_ends": len(faced) == 2,
            "success": float(reward) > 0, "steps": steps}


def summarise(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates over episodes: success, saw the start object, faced both ends, and success by start position."""
    n = len(episodes)
    by_start: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in episodes:
        by_start[e["start_x"]].append(e)
    saw = [e for e in episodes if e["saw_start_object"]]
    return {
        "episodes": n,
        "success": sum(e["success"] for e in episodes) / n,
        "saw_start_object": len(saw) / n,
        "success_when_seen": sum(e["success"] for e in saw) / len(saw) if saw else None,
        "faced_both_ends": sum(e["faced_both_ends"] for e in episodes) / n,
        "mean_steps": float(np.mean([e["steps"] for e in episodes])),
        "by_start_x": {x: {"episodes": len(es), "success": sum(e["success"] for e in es) / len(es),
                           "saw_start_object": sum(e["saw_start_object"] for e in es) / len(es)}
                       for x, es in sorted(by_start.items())},
        "endings": dict(Counter("success" if e["success"] else "failure or time-out" for e in episodes)),
    }


def chooser(act: Act | StatefulAct) -> Choose:
    """``choose`` for one env from the evaluation protocol's actor (a stateful one starts each episode empty)."""
    def choose(obs: Any, episode_start: bool) -> int:
        if not isinstance(act, StatefulAct):
            return int(act(stack([obs]))[0])
        if episode_start:
            act.reset(1)
        return int(act(stack([obs]), np.array([episode_start]))[0])

    return choose


def load_run(run_dir: Path) -> tuple[BaseAlgorithm, gym.Env]:
    """A saved run's final model (with its VecNormalize statistics, if saved with them) and its level."""
    config = json.loads((run_dir / CONFIG_FILE).read_text())["config"]
    model = load_agent(config["algo"], run_dir / MODEL_FILE, config["env_id"], env_kwargs=config["env_kwargs"],
                       device="cpu")
    return model, make_env(config["env_id"], **config["env_kwargs"])


def behaviour(model: BaseAlgorithm, env: gym.Env, episodes: int, greedy: bool,
              seed: int = EVAL_SEED) -> dict[str, Any]:
    """:func:`summarise` of ``episodes`` fresh episodes of ``model`` (seeds ``seed``, ``seed + 1``, ...; sampled
    actions from the evaluation protocol's own random stream, seeded ``seed``)."""
    choose = chooser(sb3_actor(model, greedy=greedy, seed=seed))
    return summarise([play_episode(env, choose, seed + i) for i in range(episodes)])


def format_summary(name: str, s: dict[str, Any]) -> str:
    starts = ", ".join(f"x={x}: {v['success']:.2f} ({v['episodes']})" for x, v in s["by_start_x"].items())
    when_seen = "n/a" if s["success_when_seen"] is None else f"{s['success_when_seen']:.3f}"
    return (f"{name}: success {s['success']:.3f} on {s['episodes']} episodes; saw the start object "
            f"{s['saw_start_object']:.3f} (success then {when_seen}); "
            f"faced both end objects {s['faced_both_ends']:.3f}; mean length {s['mean_steps']:.1f} steps\n"
            f"  success by start x (episodes): {starts}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--out", type=Path, help="write the summaries as JSON")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    for run_dir in args.run_dirs:
        if not (run_dir / MODEL_FILE).exists() or not (run_dir / CONFIG_FILE).exists():
            parser.error(f"{run_dir}: not a finished run (needs {CONFIG_FILE} and {MODEL_FILE})")
    torch.set_num_threads(1)
    out = {}
    for run_dir in args.run_dirs:
        model, env = load_run(run_dir)
        for greedy in (False, True):
            name = f"{run_dir} ({'greedy' if greedy else 'sampled'})"
            out[name] = behaviour(model, env, args.episodes, greedy)
            print(format_summary(name, out[name]), flush=True)
        env.close()
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
