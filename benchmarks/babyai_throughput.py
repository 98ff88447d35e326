"""PPO on BabyAI: the lab's preset vs the field's starter code (torch-ac + rl-starter-files' ACModel), side by side.

    pip install -e ".[bench]"                         # torch-ac==1.4.0, the peer
    python -m benchmarks.babyai_throughput            # GoToRedBallGrey, seed 1, 151,552 frames each, 2,000 episodes
    python -m benchmarks.babyai_throughput --seed 2 --preset babyai-gotoredballgrey-cells   # the recipe before
    python -m benchmarks.babyai_throughput --frames 4096 --eval-episodes 20 --no-peer     # the lab side alone

Both train for the same frames on the preset's level with the same seed in one process, one torch thread, envs
stepped in-process, in alternating chunks: one lab rollout + update, then peer updates until the peer has as many
frames (2,048 each, rl-starter-files' 16 procs x 128), and so on, so machine load hits both alike. Each side's
CPU seconds (``time.process_time``) and wall seconds are summed over its own chunks; the headline is frames per
CPU-second over the whole run, with the median over rounds beside it. Each side runs on its own torch / numpy /
random states (swapped at every chunk), so its numbers are those of a run alone with that seed. ``--frames`` is
rounded up to a multiple of both sides' update sizes, so both stop at exactly the same frame count.

Then both are scored the same way (:mod:`envs.evaluation`): ``--eval-episodes`` fresh episodes from the
``EVAL_SEED`` rule, 100 in lockstep, with sampled actions (the BabyAI paper's rule; the sampling generator seeded
alike) and with greedy ones; the peer through a small actor on its own observations (:mod:`benchmarks.torch_ac_peer`).
Evaluation time is not counted. Output: a table on stdout and ``--out`` (JSON with the machine's load).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from agents.config import AgentConfig
from agents.evaluation import Evaluator
from agents.factory import make_agent
from agents.presets import get_preset
from envs.evaluation import EVAL_SEED, evaluate, logits_actor
from lab.io import write_json
from lab.runtime import count_parameters

DEFAULT_FRAMES = 150_000  # the budget; rounded up to 151,552 (74 peer updates)
PEER_NAME = "torch-ac 1.4.0 + ACModel"


class RandomStates:
    """One side's torch / numpy / random states: ``enter()`` installs them, ``leave()`` stores them back."""

    def __init__(self) -> None:
        self.leave()

    def leave(self) -> None:
        self.torch, self.numpy, self.python = torch.get_rng_state(), np.random.get_state(), random.getstate()

    def enter(self) -> None:
        torch.set_rng_state(self.torch)
        np.random.set_state(self.numpy)
        random.setstate(self.python)


class Clock:
    """CPU and wall seconds of one side, chunk by chunk (a chunk's frames give its round's rate)."""

    def __init__(self) -> None:
        self.cpu, self.wall, self.rounds = 0.0, 0.0, []  # rounds: (frames, cpu s, wall s) per chunk
        self._start: tuple[float, float] | None = None

    def start(self) -> None:
        self._start = (time.process_time(), time.perf_counter())

    def stop(self, frames: int) -> None:
        cpu, wall = time.process_time() - self._start[0], time.perf_counter() - self._start[1]
        self.cpu, self.wall = self.cpu + cpu, self.wall + wall
        if frames:
            self.rounds.append((frames, cpu, wall))

    def summary(self, frames: int) -> dict[str, Any]:
        rates = [f / c for f, c, _ in self.rounds if c > 0]
        return {"frames": frames, "cpu_s": self.cpu, "wall_s": self.wall, "frames_per_cpu_s": frames / self.cpu,
                "frames_per_wall_s": frames / self.wall, "median_round_frames_per_cpu_s": statistics.median(rates),
                "rounds": len(rates)}


class Interleave(BaseCallback):
    """Hands the CPU to the peer between two lab rollouts until the peer has caught up in frames."""

    def __init__(self, peer: Any, lab_clock: Clock, peer_clock: Clock, lab_rng: RandomStates,
                 peer_rng: RandomStates) -> None:
        super().__init__()
        self.peer, self.lab_clock, self.peer_clock = peer, lab_clock, peer_clock
        self.lab_rng, self.peer_rng = lab_rng, peer_rng
        self.peer_frames, self._lab_frames_at_start = 0, 0

    def _on_training_start(self) -> None:
        self.lab_clock.start()

    def _on_rollout_start(self) -> None:
        if self.peer is not None and self.peer_frames < self.num_timesteps:
            self.lab_clock.stop(self.num_timesteps - self._lab_frames_at_start)
            self._lab_frames_at_start = self.num_timesteps
            self.catch_up(self.num_timesteps)
            self.lab_clock.start()

    def _on_training_end(self) -> None:
        self.lab_clock.stop(self.num_timesteps - self._lab_frames_at_start)

    def _on_step(self) -> bool:
        return True

    def catch_up(self, frames: int) -> None:
        """Peer updates (rollout + PPO epochs), each its own round, until the peer has ``frames`` frames."""
        self.lab_rng.leave()
        self.peer_rng.enter()
        while self.peer_frames < frames:
            self.peer_clock.start()
            exps, _ = self.peer.collect_experiences()
            self.peer.update_parameters(exps)
            self.peer_frames += self.peer.num_frames
            self.peer_clock.stop(self.peer.num_frames)
        self.peer_rng.leave()
        self.lab_rng.enter()


def matched_frames(frames: int, *sizes: int) -> int:
    """``frames`` rounded up to a multiple of every update size."""
    step = math.lcm(*sizes)
    return -(-frames // step) * step


def lab_config(preset: str, frames: int, eval_episodes: int) -> AgentConfig:
    return get_preset(preset).merged(timesteps=frames, eval_episodes=eval_episodes, eval_actions="both")


def evaluate_peer(algo: Any, level: str, episodes: int, num_envs: int) -> dict[str, float]:
    from benchmarks.torch_ac_peer import make_peer_env, peer_logits

    algo.acmodel.eval()
    out = {}
    for greedy, key in ((False, "success_rate"), (True, "success_rate_greedy")):
        act = logits_actor(peer_logits(algo), greedy, EVAL_SEED, device=None)
        result = evaluate(lambda: make_peer_env(level), act, episodes, seed=EVAL_SEED, num_envs=num_envs,
                          greedy=greedy, env_id=level)
        out[key] = result.success_rate
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    level = preset.env_id.removeprefix("lab/")
    lab_update = preset.n_envs * preset.algo_kwargs.get("n_steps", 2048)
    peer = None
    if args.peer:
        from benchmarks.torch_ac_peer import PEER_PPO, PEER_PROCS, make_peer

        frames = matched_frames(args.frames, lab_update, PEER_PROCS * PEER_PPO["frames_per_proc"])
    else:
        frames = matched_frames(args.frames, lab_update)
    config = lab_config(args.preset, frames, args.eval_episodes)
    model = make_agent(config, seed=args.seed, device="cpu")  # seeds torch / numpy / random for the lab
    lab_rng = RandomStates()
    if args.peer:
        peer = make_peer(level, args.seed)  # seeds them again, as rl-starter-files' train.py does, for the peer
    peer_rng = RandomStates()
    lab_rng.enter()
    lab_clock, peer_clock = Clock(), Clock()
    interleave = Interleave(peer, lab_clock, peer_clock, lab_rng, peer_rng)
    load_before = os.getloadavg()
    model.learn(frames, callback=interleave)
    if peer is not None:
        interleave.catch_up(frames)
    load_after = os.getloadavg()
    lab = {"name": f"lab preset {args.preset}", "params": count_parameters(model.policy), **lab_clock.summary(frames)}
    lab.update(Evaluator(config.merged(eval_envs=args.eval_envs))(model))
    report: dict[str, Any] = {"level": level, "seed": args.seed, "frames": frames, "eval_episodes": args.eval_episodes,
                              "lab": lab, "lab_config": config.to_dict()}
    if peer is not None:
        report["peer"] = {"name": PEER_NAME, "params": count_parameters(peer.acmodel),
                          **peer_clock.summary(interleave.peer_frames),
                          **evaluate_peer(peer, level, args.eval_episodes, args.eval_envs)}
        report["ratio_cpu"] = lab["frames_per_cpu_s"] / report["peer"]["frames_per_cpu_s"]
        report["ratio_wall"] = lab["frames_per_wall_s"] / report["peer"]["frames_per_wall_s"]
        report["ratio_median_rounds"] = (lab["median_round_frames_per_cpu_s"]
                                         / report["peer"]["median_round_frames_per_cpu_s"])
    report["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                         "threads": args.threads, "load_average_before": load_before, "load_average_after": load_after}
    report["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return report


def format_report(report: dict[str, Any]) -> str:
    head = (f"{report['level']}, seed {report['seed']}, {report['frames']:,} frames each, success on "
            f"{report['eval_episodes']:,} fresh episodes")
    lines = [head, f"{'':34s} {'params':>8s} {'frames/CPU-s':>12s} {'(median round)':>14s} {'frames/wall-s':>13s} "
                   f"{'sampled':>8s} {'greedy':>7s}"]
    for key in ("lab", "peer"):
        if key in report:
            r = report[key]
            lines.append(f"{r['name']:34s} {r['params']:8,d} {r['frames_per_cpu_s']:12,.0f} "
                         f"{r['median_round_frames_per_cpu_s']:14,.0f} {r['frames_per_wall_s']:13,.0f} "
                         f"{r['success_rate']:8.3f} {r['success_rate_greedy']:7.3f}")
    if "ratio_cpu" in report:
        lines.append(f"ratio lab / torch-ac: {report['ratio_cpu']:.2f} by CPU time "
                     f"({report['ratio_median_rounds']:.2f} median of rounds, {report['ratio_wall']:.2f} by wall time)")
    load = report["machine"]
    before, after = load["load_average_before"][0], load["load_average_after"][0]
    lines.append(f"load average before / after: {before:.2f} / {after:.2f} on {load['cpus']} CPUs")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--preset", default="babyai-gotoredballgrey", help="the lab's recipe (its level is the level)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="training frames of each side (rounded up)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--eval-episodes", type=int, default=2000, help="fresh episodes per action rule and side")
    parser.add_argument("--eval-envs", type=int, default=100, help="episodes played in lockstep")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="the lab side only (no torch-ac needed)")
    parser.add_argument("--out", default="benchmarks/results/babyai_throughput.json")
    args = parser.parse_args(argv)
    if args.frames < 1 or args.eval_episodes < 1 or args.eval_envs < 1 or args.threads < 1:
        parser.error("--frames, --eval-episodes, --eval-envs and --threads must be positive")
    try:
        get_preset(args.preset)
    except ValueError as error:
        parser.error(str(error))
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, report)
    print(format_report(report))
    print(f"wrote {out}")
    return report


if __name__ == "__main__":
    main()
