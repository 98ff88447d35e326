"""The lab's trajectory shards against Minari's storage formats: write and read times, bytes on disk.

    python -m benchmarks.trajectory_store                         # 2,000 GoToRedBallGrey bot demos, HDF5
    python -m benchmarks.trajectory_store --formats hdf5 arrow    # Minari's arrow format too (slow to write)
    python -m benchmarks.trajectory_store --policy random --episodes 2000

What docs/ARCHITECTURE.md's split rests on ("Trajectories: the lab's shards and Minari"): collecting into shards,
loading them, writing the same episodes as a Minari dataset (``envs.minari_io.write_minari``), reading it back
with Minari's own ``iterate_episodes`` and as the lab's DemoSet (``read_minari``), and the shard cache
``load_minari`` builds on the first read and loads afterwards. Everything goes to a temporary directory; the
numbers to the terminal and ``benchmarks/results/trajectory_store.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "trajectory_store.json"


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def measure(level: str, episodes: int, policy: str, formats: list[str], root: Path) -> dict[str, Any]:
    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")  # before minari is imported
    import minari

    import envs.minari_io as minari_io
    from envs.demos import collect_trajectories
    from envs.trajectories import load_demos

    shards = root / "shards"
    successes_only = policy == "bot"
    _, collect_s = _timed(lambda: collect_trajectories(level, episodes, shards, policy, successes_only=successes_only,
                                                       progress=False))
    demos, load_s = _timed(lambda: load_demos(shards))
    row: dict[str, Any] = {"level": level, "policy": policy, "episodes": demos.num_episodes, "steps": demos.num_steps,
                           "shards": {"collect_s": collect_s, "load_s": load_s, "mb": _size_mb(shards)}}
    for data_format in formats:
        minari_io.DATA_FORMAT = data_format  # the module's choice, overridden to measure the others
        dataset_id = f"bench/{data_format}-v0"
        dataset, write_s = _timed(lambda: minari_io.write_minari(dataset_id, demos, level=level))
        _, iterate_s = _timed(lambda: sum(len(e.actions) for e in minari.load_dataset(dataset_id).iterate_episodes()))
        _, read_s = _timed(lambda: minari_io.read_minari(dataset_id))
        cache = root / f"cache-{data_format}"
        _, cache_build_s = _timed(lambda: minari_io.load_minari(dataset_id, cache_root=cache))
        _, cache_hit_s = _timed(lambda: minari_io.load_minari(dataset_id, cache_root=cache))
        row[f"minari_{data_format}"] = {"write_s": write_s, "iterate_episodes_s": iterate_s, "read_minari_s": read_s,
                                        "cache_build_s": cache_build_s, "cache_hit_s": cache_hit_s,
                                        "mb": _size_mb(Path(dataset.storage.data_path))}
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.trajectory_store", description=__doc__.split("\n")[0])
    parser.add_argument("--level", default="BabyAI-GoToRedBallGrey-v0")
    parser.add_argument("--episodes", type=int, default=2000)
    parser.add_argument("--policy", default="bot", help="behaviour policy (envs.behaviour.POLICY_NAMES)")
    parser.add_argument("--formats", nargs="+", default=["hdf5"], choices=["hdf5", "arrow", "parquet"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        row = measure(args.level, args.episodes, args.policy, args.formats, Path(tmp))
    row.update(machine=platform.processor() or platform.machine(), cpus=os.cpu_count())
    print(json.dumps(row, indent=1))
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.write_text(json.dumps([*rows, row], indent=1) + "\n")


if __name__ == "__main__":
    main()
