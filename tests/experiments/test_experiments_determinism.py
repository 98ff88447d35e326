"""A run depends on its seed only: the same job twice gives the same curve (wall times aside)."""
from __future__ import annotations

from experiments.digits import plan as digits
from experiments.engine import run_jobs


def test_the_same_seed_gives_the_same_runs_and_another_seed_does_not(tmp_path):
    budget = digits.DigitsBudget(samples=128, eval_every=64, channels=(8, 16), strides=(1, 2), algos=("ppo",))
    budget = budget.resolve(full=False)

    def curves(out, seed):
        jobs = digits.jobs(budget, [seed])
        outcome = run_jobs(jobs, out, workers=0, progress=False)
        assert outcome.ok, outcome.errors
        return {r["variant"]: [(p["samples"], p["accuracy"]) for p in r["curve"]] for r in outcome.records.values()}

    first, again, other = curves(tmp_path / "a", 3), curves(tmp_path / "b", 3), curves(tmp_path / "c", 4)
    assert first == again
    assert first != other
