"""Portable mode: the same numbers from the same command on other x86-64 CPUs with AVX2, not only on one machine.

By default torch picks the fastest kernels the CPU offers, and they round differently: ATen's vectorised kernels
(AVX2 or AVX-512: ``ATEN_CPU_CAPABILITY``), MKL's matrix products and vector maths (its code path per CPU and per
vendor: ``MKL_CBWR``) and oneDNN's convolutions (up to AVX-512 and AMX: ``ONEDNN_MAX_CPU_ISA``) each change the
last bits of a result, and training turns those into other curves. ``--portable`` pins ATen and oneDNN to AVX2,
MKL to its conditional-numerical-reproducibility mode for Intel and non-Intel CPUs (``COMPATIBLE``), one intra-op
thread (a parallel reduction's split depends on the thread count), ``torch.use_deterministic_algorithms`` (set by
``lab/__init__`` in every process that imports the lab) and, in ``lab.optim``, the fused optimizer kernels where
torch has them (Adam, AdamW, SGD, Adagrad) and an RMSprop step that takes its square roots as 1 / rsqrt: torch's
own kernels take them through MKL's vector maths, whose AMD and Intel paths differ even in that mode. What this
buys and costs was measured (BENCHMARKS.md, "Reproducing numbers on another machine"). Adamax and NAdam (used only
by the optimizers experiment) were not checked: NAdam's square roots go through MKL, so its runs may still differ
between vendors.

The environment is read when the libraries load, so a command given ``--portable`` starts itself again with it
(:func:`restart_if_requested`) before any work; Ray's workers inherit it (or get it through the job's runtime
environment on a cluster). numpy's own SIMD kernels (``NPY_DISABLE_CPU_FEATURES``) were checked and do not change
the lab's numbers.
"""
from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Sequence
from typing import Any

FLAG = "--portable"
ENVIRONMENT = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's vectorised kernels at AVX2 width, whatever the CPU offers beyond
    # MKL's conditional numerical reproducibility in the one mode MKL promises across vendors (Intel and AMD);
    # "AVX2" left MKL's vector maths (exp, log) on different paths on an AMD and an Intel CPU
    "MKL_CBWR": "COMPATIBLE",
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN (convolutions) without AVX-512 / AMX
    "OMP_NUM_THREADS": "1",  # one intra-op thread: a parallel reduction's split depends on the thread count
    "MKL_NUM_THREADS": "1",
    "LAB_PORTABLE": "1",  # lab/__init__ turns torch's deterministic algorithms on
}
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS",
         "MKL_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES")  # every cap a results file records


def active() -> bool:
    """Whether this process computes in portable mode (``lab.optim`` then picks the fused optimizers)."""
    return os.environ.get("LAB_PORTABLE") == "1"


def in_force() -> bool:
    """Whether this process started with the portable environment."""
    return all(os.environ.get(key) == value for key, value in ENVIRONMENT.items())


def restart_if_requested(argv: Sequence[str], command: Sequence[str]) -> None:
    """With ``--portable`` in ``argv`` and its environment not yet in force, replace this process by
    ``command + argv`` with it (the libraries read it when they load); otherwise return."""
    if FLAG not in argv or in_force():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command, *argv], {**os.environ, **ENVIRONMENT})


def kernel_set() -> dict[str, Any]:
    """What decides the last bits of this process's numbers: the CPU, torch's kernel choices and library
    versions, and the caps in force (for ``results.json``)."""
    import torch

    config = torch.__config__.show()
    mkl = re.search(r"Math Kernel Library Version ([\w.-]+)", config)
    onednn = re.search(r"MKL-DNN v([\w.]+)", config)
    return {
        "portable": in_force(), "cpu": cpu_model(), "machine": platform.machine(),
        "torch": torch.__version__, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkl": mkl.group(1) if mkl else None, "onednn": onednn.group(1) if onednn else None,
        "torch_threads": torch.get_num_threads(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "caps": {key: os.environ[key] for key in KNOBS if key in os.environ},
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
