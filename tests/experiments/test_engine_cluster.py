"""The Ray engine on a real two-node cluster on this machine (head: 1 CPU, a second node: 1 CPU).

The nodes share this machine's disk, but the engine must not rely on it: a job on the second node writes to a
scratch directory there and its run directory comes back through the object store. Custom resources pin jobs
to a node, so each way a dependency's artifacts can travel is exercised.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray.cluster_utils import Cluster

from experiments.engine import Job, run_jobs
from experiments.engine import run as engine_run
from experiments.engine.markers import MARKER
from experiments.engine.ray_runner import scratch_root
from lab.io import atomic_write_text, write_json

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import the tests


# A toy job: adds value * (step + 1) over its steps to what its dependencies wrote to out.txt (read relative
# to deps[id]["run_dir"], as real jobs do), checkpointing after every step; appends its process id to pid_file.
def count(run_dir: Path, report: Any, deps: dict[str, dict[str, Any]], *, value: float, steps: int = 3,
          sleep: float = 0.0, fail: bool = False, pid_file: str | None = None) -> dict[str, Any]:
    if pid_file:
        with open(pid_file, "a") as f:
            f.write(f"{os.getpid()}\n")
    if fail:
        raise RuntimeError("this run fails")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = run_dir / "checkpoint.json"
    state = json.loads(checkpoint.read_text()) if checkpoint.is_file() else {"step": 0, "total": 0.0}
    resumed_at = state["step"]
    for step in range(state["step"], steps):
        time.sleep(sleep)
        state = {"step": step + 1, "total": state["total"] + value * (step + 1)}
        write_json(checkpoint, state)
        report(step + 1, steps)
    inherited = sum(float((Path(d["run_dir"]) / "out.txt").read_text()) for d in deps.values())
    total = state["total"] + inherited
    atomic_write_text(run_dir / "out.txt", repr(total))
    return {"value": total, "resumed_at": resumed_at, "run_dir": str(run_dir), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "out_file": str(run_dir / "out.txt")}


@pytest.fixture(scope="module")
def cluster(signal_handlers_restored):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # The head declares one GPU (Ray schedules by declared resources; no device is touched here).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 1, "resources": {"head": 1},
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, resources={"other": 1})
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def job(id_, value, on, deps=(), **kwargs):
    return Job(id_, count, dict(value=value, **kwargs), deps=deps, resources={on: 0.5})


def test_jobs_run_on_both_nodes_and_every_artifact_ends_up_under_out(cluster, tmp_path):
    out = tmp_path / "out"
    jobs = [
        job("t/a/seed1", 1.0, "head"),
        job("t/b/seed1", 2.0, "other"),
        job("t/a-then-other/seed1", 10.0, "other", deps=("t/a/seed1",)),  # a's files shipped to the other node
        job("t/b-then-head/seed1", 20.0, "head", deps=("t/b/seed1",)),  # b's files already came back here
        job("t/b-then-other/seed1", 30.0, "other", deps=("t/b/seed1",)),  # b's files shipped back out
        job("t/bad/seed1", 0.0, "other", fail=True, pid_file=str(tmp_path / "bad.pids")),
        job("t/after-bad/seed1", 0.0, "head", deps=("t/bad/seed1",)),
    ]
    outcome = run_jobs(jobs, out, address=cluster.address, progress=False)
    values = {k: r["value"] for k, r in outcome.records.items()}
    assert values == {"t/a/seed1": 6.0, "t/b/seed1": 12.0, "t/a-then-other/seed1": 66.0,
                      "t/b-then-head/seed1": 132.0, "t/b-then-other/seed1": 192.0}
    nodes = {k: r["node"]["node_id"] for k, r in outcome.records.items()}
    head = nodes["t/a/seed1"]
    assert nodes["t/b-then-head/seed1"] == head and len(set(nodes.values())) == 2
    assert all(nodes[k] != head for k in ("t/b/seed1", "t/a-then-other/seed1", "t/b-then-other/seed1"))
    for job_id, record in outcome.records.items():
        run_dir = out / job_id
        assert record["run_dir"] == str(run_dir) and record["out_file"] == str(run_dir / "out.txt")  # rewritten
        assert float((run_dir / "out.txt").read_text()) == record["value"]
        assert (run_dir / "checkpoint.json").is_file() and (run_dir / MARKER).is_file()
        assert record["node"]["resources"]["CPU"] == 1
    assert not list((scratch_root(str(out)) / "runs").rglob("*.txt"))  # nothing left behind on the other node
    assert "this run fails" in outcome.errors["t/bad/seed1"]
    assert len((tmp_path / "bad.pids").read_text().split()) == 1  # a real error is not retried
    assert outcome.errors["t/after-bad/seed1"].startswith("skipped")
    assert outcome.engine["nodes"] == 2 and outcome.engine["cpus"] == 2


def test_gpu_jobs_get_a_gpu_share_and_the_others_none(cluster, tmp_path):
    jobs = [Job("g/supervised/seed1", count, dict(value=1.0), gpus=0.5),  # e.g. supervised / BC on a GPU node
            Job("g/rl/seed1", count, dict(value=1.0), resources={"head": 0.5})]  # RL rollouts: CPU only
    outcome = run_jobs(jobs, tmp_path / "out", address=cluster.address, progress=False)
    gpu, cpu = outcome.records["g/supervised/seed1"], outcome.records["g/rl/seed1"]
    assert gpu["node"]["resources"]["GPU"] == ["0"] and gpu["cuda_visible_devices"] == "0"
    assert cpu["node"]["resources"]["GPU"] == [] and not cpu["cuda_visible_devices"]
    assert outcome.engine["gpus"] == 1


def test_a_job_no_node_can_run_fails_at_once_and_its_dependants_are_skipped(cluster, tmp_path):
    jobs = [Job("x/gpu-elsewhere/seed1", count, dict(value=1.0), gpus=0.5, resources={"other": 0.5}),  # GPU on head only
            Job("x/after/seed1", count, dict(value=1.0), deps=("x/gpu-elsewhere/seed1",)),
            Job("x/fine/seed1", count, dict(value=2.0))]
    outcome = run_jobs(jobs, tmp_path / "out", address=cluster.address, progress=False)
    assert "cannot be scheduled" in outcome.errors["x/gpu-elsewhere/seed1"]
    assert "skipped" in outcome.errors["x/after/seed1"]
    assert outcome.records["x/fine/seed1"]["value"] == 12.0  # 2 * (1 + 2 + 3): the others go on


def test_a_job_whose_worker_is_killed_is_retried_from_its_checkpoint(cluster, tmp_path, monkeypatch):
    out, pids = tmp_path / "out", tmp_path / "pids"
    slow = Job("k/slow/seed1", count, dict(value=1.0, steps=6, sleep=0.4, pid_file=str(pids)),
               resources={"other": 1}, resumable=True)
    checkpoint = scratch_root(str(out)) / "runs" / slow.id / "checkpoint.json"

    def kill_once() -> None:
        deadline = time.monotonic() + 60
        while not checkpoint.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(int(pids.read_text().split()[0]), signal.SIGKILL)

    updates = []  # what reached the driver's display from report(done, total) in the worker

    class Recording(engine_run.Display):
        def update(self, job_id: str, done: float, total: float) -> None:
            updates.append((job_id, done, total))
            super().update(job_id, done, total)

    monkeypatch.setattr(engine_run, "Display", Recording)
    killer = threading.Thread(target=kill_once)
    killer.start()
    outcome = run_jobs([slow], out, address=cluster.address, progress=False)
    killer.join()
    assert outcome.ok, outcome.errors
    record = outcome.records[slow.id]
    assert record["value"] == 21.0  # 1 + 2 + ... + 6, as without the kill
    assert len(set(pids.read_text().split())) == 2 and record["resumed_at"] > 0
    assert (out / slow.id / MARKER).is_file()
    assert updates and all(job_id == slow.id and 0 < done <= total == 6 for job_id, done, total in updates)


def test_real_jobs_pass_their_files_between_nodes(cluster, tmp_path):
    """Experiment 4, tiny: the demos are collected on the head, behaviour cloning runs on the other node (the
    demos travel there), PPO fine-tuning on the head starts from the cloned policy (its files travel back)."""
    from dataclasses import replace

    from experiments.finetune import plan as finetune

    budget = finetune.FinetuneBudget(pretrain_demos=8, bc_steps=4, rl_steps=256, eval_every=128, eval_episodes=4,
                                     strategies=("frozen", "scratch")).resolve(full=False)
    place = {"finetune/demos": "head", "finetune/bc-pretrain/seed1": "other", "finetune/frozen/seed1": "head"}
    # gpus=0: BC jobs ask for half a GPU where the cluster has one, and only the head declares one here
    jobs = [replace(j, resources={place.get(j.id, "other"): 0.5}, gpus=0.0) for j in finetune.jobs(budget, [1])]
    outcome = run_jobs(jobs, tmp_path / "out", address=cluster.address, progress=False)
    assert outcome.ok, outcome.errors
    runs = {r["variant"]: r for r in outcome.records.values()}
    nodes = {v: r["node"]["node_id"] for v, r in runs.items()}
    assert nodes["demos"] == nodes["frozen"] != nodes["bc-pretrain"]
    # Frozen encoder and head: the curve starts at the cloned policy's success on the same episodes.
    assert runs["frozen"]["curve"][0]["success_rate"] == pytest.approx(runs["bc-pretrain"]["success_rate"])
    for job in jobs:
        run_dir = tmp_path / "out" / job.id
        assert (run_dir / MARKER).is_file() and outcome.records[job.id]["run_dir"] == str(run_dir)
    assert (tmp_path / "out" / "finetune/bc-pretrain/seed1" / "encoder.pt").is_file()
