"""Experiment 3 done fairly: each optimizer's learning rate tuned with Ray Tune, the same budget for every
optimizer in both paradigms, on the *validation* split; the tuned rates then run over seeds on the test split.

Comparing optimizers at one default rate each mostly measures the defaults (Schmidt, Schneider & Hennig 2021,
"Descending through a crowded valley"). Here every (paradigm, optimizer) pair gets the same search:

- space: ``lr = default x 10^u`` with ``u`` uniform in ``LOG10_RANGE`` (the registry's ``default_lr`` of
  ``lab.optim`` is the centre of a range of ``LOG10_RANGE`` decades), nothing else changes;
- search: Ray Tune's random search (``BasicVariantGenerator`` with a fixed ``random_state``): ``trials`` trials
  per pair, each one run of the experiment's budget with training seed ``TUNE_SEED`` (not one of the test
  seeds 1..N);
- metric: final accuracy on the digits validation split (179 images; the test split is never looked at while
  tuning); the best trial is the highest validation accuracy, a tie going to the rate nearest the default.

:func:`tune_rates` runs the trials as Ray Tune trials on the engine's Ray (local instance or ``--address``) and
returns, per variant (``supervised-adam``, ``ppo-adam``, ...), the tuned rate with every trial; the tuned runs
are ``<variant>-tuned`` jobs of the experiment (:func:`tuned_jobs`), beside the default-rate ones.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

from experiments.digits import plan as digits
from experiments.engine.connect import CONNECT_TIMEOUT_S, NotConnected, connect
from experiments.engine.jobs import Job
from experiments.engine.markers import ResumeMismatchError
from experiments.engine.signals import Interrupted, Signals
from experiments.optimizers.plan import WEIGHT_DECAY
from experiments.optimizers.variants import PARADIGMS, TUNED
from experiments.spec import ExtraContext
from lab.io import write_json
from lab.optim import get_optimizer_info

LOG10_RANGE = (-2.0, 1.0)  # lr from default / 100 to default x 10
TUNE_SEED = 0
METRIC = "val_accuracy"
TUNING_JSON = "tuning.json"  # in the experiment directory: the search's settings, every trial, the tuned rates


def variant_job(exp: str, paradigm: str, name: str, seed: int, budget: Any, lr: float, suffix: str = "") -> Job:
    """One run of experiment 3 (``budget``: an ``OptimizersBudget``) at learning rate ``lr``."""
    base, variant = budget.digits_budget(), f"{paradigm}-{name}{suffix}"
    if paradigm == "supervised":
        return digits.supervised_job(exp, variant, seed, base, optimizer=name, lr=lr)
    return digits.rl_job(exp, variant, "ppo", seed, base, optimizer=name, lr=lr, weight_decay=WEIGHT_DECAY)


def validation_accuracy(paradigm: str, record: dict[str, Any]) -> float:
    """Accuracy of a finished run's final model on the validation split."""
    if paradigm == "supervised":
        return float(record["metrics"]["final_val_accuracy"])
    from stable_baselines3 import PPO  # here, in the trial's worker: the command line never loads SB3 for this

    from agents.evaluation import sb3_actor
    from envs.evaluation import bandit_accuracy
    from envs.make import make_env

    model = PPO.load(Path(record["run_dir"]) / "model.zip", device="cpu")
    env = make_env(record["env_id"], split="val")
    try:
        return bandit_accuracy(sb3_actor(model, greedy=True, seed=TUNE_SEED), env)["accuracy"]
    finally:
        env.close()


def trial(config: dict[str, Any], budget: Any) -> None:
    """A Ray Tune trial: one run at ``config["lr"]`` in a scratch directory, reports its validation accuracy."""
    import torch
    from ray import tune

    torch.set_num_threads(1)
    job = variant_job("tune", config["paradigm"], config["optimizer"], TUNE_SEED, budget, config["lr"])
    with tempfile.TemporaryDirectory(prefix="lab-tune-") as scratch:  # the trial's files are not kept
        record = job.fn(run_dir=Path(scratch) / "run", report=None, deps={}, **job.kwargs)
        tune.report({METRIC: validation_accuracy(config["paradigm"], record)})


def tune_rates(budget: Any, trials: int, storage: Path, workers: int = 2, address: str | None = None,
               seed: int = TUNE_SEED, connect_timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """Tune every (paradigm, optimizer) pair of ``budget`` with ``trials`` trials each; the tuned rates, the
    search's settings and every trial (JSON-able). Starts (or joins) Ray and shuts it down after."""
    from ray import tune  # here: importing Ray takes a second, and only a tuned experiment needs Tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no TensorBoard/CSV per trial
    signals = Signals(raise_at_once=True)  # Ray's loops may mangle the exception: it is checked below
    shutdown = None
    try:
        shutdown = connect(address, workers, signals, connect_timeout)  # Tune sets its own SIGINT handler in fit

        def lr_of(spec: Any) -> float:  # a sample of u, as a learning rate of that trial's optimizer
            return get_optimizer_info(spec.config["optimizer"]).default_lr * 10 ** spec.config["log10_factor"]

        space = {"paradigm": tune.grid_search(list(PARADIGMS)), "optimizer": tune.grid_search(list(budget.optimizers)),
                 "log10_factor": tune.uniform(*LOG10_RANGE), "lr": tune.sample_from(lr_of)}
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trial, budget=budget), {"cpu": 1}),
            param_space=space,
            tune_config=tune.TuneConfig(num_samples=trials, search_alg=BasicVariantGenerator(random_state=seed)),
            run_config=tune.RunConfig(name="lr-search", storage_path=str(Path(storage).resolve()), verbose=0,
                                      log_to_file=True))
        grid = tuner.fit()
        rows = []
        for result in grid:
            if result.error is not None and not signals.caught:
                raise RuntimeError(f"a tuning trial failed ({result.config}): {result.error}")
            if signals.caught or METRIC not in (result.metrics or {}):  # Tune stopped early on SIGINT
                raise Interrupted(signals.caught[0] if signals.caught else signal.SIGINT, 0, 0)
            c = result.config
            rows.append({"variant": f"{c['paradigm']}-{c['optimizer']}", "lr": c["lr"],
                         "log10_factor": c["log10_factor"], METRIC: result.metrics[METRIC]})
    except (Interrupted, NotConnected):
        raise
    except BaseException:
        if signals.caught:
            raise Interrupted(signals.caught[0], 0, 0) from None
        raise
    finally:
        if shutdown is not None:
            shutdown()
        signals.__exit__()
    rows.sort(key=lambda r: (r["variant"], r["lr"]))
    best = {}
    for variant in sorted({r["variant"] for r in rows}):
        mine = [r for r in rows if r["variant"] == variant]
        top = max(mine, key=lambda r: (r[METRIC], -abs(r["log10_factor"])))
        best[variant] = {"lr": top["lr"], METRIC: top[METRIC], "trials": len(mine)}
    return {"search": "ray.tune random search (BasicVariantGenerator)", "seed": seed, "trials_per_variant": trials,
            "space": f"lr = registry default x 10^u, u ~ uniform{LOG10_RANGE}", "metric": f"final {METRIC}",
            "training_seed": TUNE_SEED, "best": best, "trials": rows}


def tuned_jobs(budget: Any, seeds: list[int], tuned: dict[str, Any], exp: str = "optimizers") -> list[Job]:
    """The ``<variant>-tuned`` runs: each variant of ``tuned["best"]`` at its tuned rate, over ``seeds``."""
    out = []
    for seed in seeds:
        for variant, best in tuned["best"].items():
            paradigm, name = variant.split("-", 1)
            out.append(variant_job(exp, paradigm, name, seed, budget, best["lr"], suffix=TUNED))
    return out


def load_or_tune(budget: Any, trials: int, exp_dir: Path, workers: int, address: str | None,
                 resume: bool, connect_timeout: float = CONNECT_TIMEOUT_S) -> dict[str, Any]:
    """The tuning of an experiment directory: ``tuning.json`` when resuming after it was written (the search
    is deterministic, so an interrupted one simply runs again), else a new search, written atomically."""
    path = exp_dir / TUNING_JSON
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        wanted = {f"{p}-{n}" for p in PARADIGMS for n in budget.optimizers}
        if saved["trials_per_variant"] == trials and set(saved["best"]) == wanted:
            return saved
        raise ResumeMismatchError(f"{path} was tuned with other settings than this command's; resume with the "
                                  "command that started it, or choose a new --out")
    tuned = tune_rates(budget, trials, exp_dir / "tuning", workers=max(workers, 1), address=address,
                       connect_timeout=connect_timeout)
    write_json(path, tuned)
    return tuned


class TuneSweep:
    """Experiment 3's extra jobs (:class:`experiments.spec.ExtraJobs`): with ``--tune-trials N`` > 0, the Ray Tune
    search first, then the ``<variant>-tuned`` runs; ``results.json`` gets ``tuning`` (every trial, the rates)."""

    def check(self, options: dict[str, Any]) -> None:
        trials = options.get("tune_trials", 0)
        if trials < 0 or (0 < trials < 2):
            raise ValueError(f"--tune-trials must be 0 (no tuning) or at least 2 trials per optimizer, got {trials}")

    def __call__(self, context: ExtraContext) -> tuple[list[Job], dict[str, Any]]:
        trials = context.options.get("tune_trials", 0)
        if not trials:
            return [], {}
        tuned = load_or_tune(context.budget, trials, context.exp_dir, context.workers, context.address,
                             context.resume, context.connect_timeout)
        return tuned_jobs(context.budget, context.seeds, tuned, exp=context.name), {"tuning": tuned}


TUNING = TuneSweep()

