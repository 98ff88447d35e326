"""Portable mode (``--portable``, :mod:`lab.portable`): do the same runs give the same numbers on other CPUs, and
what does it cost?

    python -m benchmarks.portable                      # every probe: default and portable, native and emulated
    python -m benchmarks.portable --cost               # also: the flagship quick mode, default vs --portable
    python -m benchmarks.portable --settings native-default native-portable   # a subset

Probes (each in a fresh process, one torch thread, so the environment is read when torch loads): short runs of
the lab's own kinds of training, each reported as its final metric and a hash of its final parameters, which
changes with the last bit of any of them:

- ``supervised``: the digits separable-conv net, 40 steps of the supervised trainer (AdamW, oneDNN convs);
- ``ppo-digits``: PPO on the digits bandit (the conv net; Adam);
- ``a2c-digits``: A2C on the digits bandit (RMSprop, which has no fused kernel);
- ``ppo-babyai``: PPO with the fusion transformer on GoToRedBallGrey (Adam; attention, layer norm).

Settings: ``native-default`` (this CPU's fastest kernels), ``native-portable`` (``lab.portable.ENVIRONMENT``),
``native-portable-capped`` (portable plus MKL's and numpy's instruction sets capped at AVX2 too: a lower-ISA
machine's view of the same kernels), and, where ``qemu-x86_64`` is installed (Debian: ``qemu-user``), the same
runs on an emulated Intel CPU of another generation and vendor (``qemu-haswell-*``: AVX2, no AVX-512; about 30x
slower). Emulation is a stand-in for another machine, not one: QEMU computes some approximate instructions
exactly, so a difference it shows can be QEMU's, while agreement shows the kernels took the same path.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab import portable

REPO = Path(__file__).resolve().parents[1]
PROBES = ("supervised", "ppo-digits", "a2c-digits", "ppo-babyai")
CAPPED = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}
SETTINGS = {
    "native-default": ([], {}),
    "native-portable": ([], portable.ENVIRONMENT),
    "native-portable-capped": ([], {**portable.ENVIRONMENT, **CAPPED}),
    "qemu-haswell-default": (["qemu-x86_64", "-cpu", "Haswell"], {}),
    "qemu-haswell-portable": (["qemu-x86_64", "-cpu", "Haswell"], portable.ENVIRONMENT),
}


def parameters_hash(module: Any) -> str:
    digest = hashlib.sha256()
    for _, tensor in sorted(module.state_dict().items()):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def probe(name: str) -> dict[str, Any]:
    """One probe in this process (the child side of :func:`run_probe`)."""
    import torch

    from agents.presets import PRESETS
    from agents.run import AgentRun, RunOptions
    from lab.portable import kernel_set

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if name == "supervised":
            from supervised.digits import DigitsConfig
            from supervised.train import task_for
            from supervised.trainer import Trainer

            config = DigitsConfig()
            config.train.max_steps, config.train.seed, config.train.quiet = 40, 0, True
            config.train.device, config.train.out_dir = "cpu", tmp
            trainer = Trainer(task_for(config))
            result = trainer.fit()
            metric, model = result.metrics["test_accuracy"], trainer.model
        else:
            algo, task = name.split("-")
            preset = {"digits": "digits-bandit" if algo == "ppo" else "digits-bandit-a2c",
                      "babyai": "babyai-gotoredballgrey"}[task]
            config = PRESETS[preset].merged(timesteps=2048, eval_freq=0, eval_episodes=50)
            run = AgentRun(config, Path(tmp) / "run", RunOptions(seed=0, device="cpu", checkpoint_every_s=0))
            metric, model = run.run()["final_metric"], run.model.policy
    return {"probe": name, "final_metric": metric, "parameters": parameters_hash(model), "kernels": kernel_set()}


def run_probe(name: str, setting: str) -> dict[str, Any]:
    prefix, environment = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in portable.ENVIRONMENT and k not in CAPPED}
    start = time.perf_counter()
    done = subprocess.run([*prefix, sys.executable, "-m", "benchmarks.portable", "--child", name], cwd=REPO,
                          env={**env, **environment}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} under {setting} failed:\n{done.stderr[-2000:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "setting": setting,
            "wall_time_s": time.perf_counter() - start}


def flagship_cost(out: Path) -> dict[str, Any]:
    """Wall time of ``python -m experiments flagship`` (quick mode), default and ``--portable``."""
    times = {}
    for mode, extra in (("default", []), ("portable", ["--portable"])):
        target = out / f"flagship-{mode}"
        shutil.rmtree(target, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "experiments", "flagship", "--no-progress", "--out", str(target),
                        *extra], cwd=REPO, check=True, capture_output=True)
        finals = {}
        for experiment in ("digits", "imitation"):
            results = json.loads((target / experiment / "results.json").read_text())
            finals[experiment] = {f"{r['variant']}/seed{r['seed']}": r["final_metric"] for r in results["runs"]
                                  if r.get("final_metric") is not None}
        times[mode] = {"wall_time_s": time.perf_counter() - start, "finals": finals}
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.portable", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--probes", nargs="+", default=list(PROBES), choices=PROBES)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--cost", action="store_true", help="also time the flagship quick mode, default vs portable")
    parser.add_argument("--out", default="benchmarks/results/portable.json")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(probe(args.child)))
        return {}
    settings = [s for s in args.settings if not s.startswith("qemu") or shutil.which("qemu-x86_64")]
    rows = []
    for name in args.probes:
        for setting in settings:
            rows.append(run_probe(name, setting))
            r = rows[-1]
            print(f"{name:11s} {setting:24s} final {r['final_metric']:.6f}  parameters {r['parameters']}  "
                  f"({r['kernels']['torch_cpu_capability']}, {r['wall_time_s']:.0f} s)", flush=True)
    report: dict[str, Any] = {"machine": {"platform": platform.platform(), **portable.kernel_set()}, "rows": rows}
    for name in args.probes:
        mine = {r["setting"]: r["parameters"] for r in rows if r["probe"] == name}
        portable_settings = {s: h for s, h in mine.items() if "portable" in s}
        report.setdefault("same_in_portable_mode", {})[name] = len(set(portable_settings.values())) == 1
        print(f"{name}: portable settings agree: {report['same_in_portable_mode'][name]} "
              f"({', '.join(f'{s} {h}' for s, h in mine.items())})")
    if args.cost:
        report["flagship"] = flagship_cost(Path(tempfile.gettempdir()) / "portable-cost")
        for mode, cost in report["flagship"].items():
            print(f"flagship quick, {mode}: {cost['wall_time_s']:.1f} s")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
