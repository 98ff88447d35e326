"""Forward+backward time and peak memory: lab attention vs torch.nn.MultiheadAttention vs naive attention.

    python -m benchmarks.attention                      # CPU (and CUDA when present), batch 16, width 256, 8 heads
    python -m benchmarks.attention --lengths 64 256 --repeats 5 --out benchmarks/results/attention.json

Each (implementation, length, device) runs in a fresh subprocess so peak memory is its own: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the rise of the process's peak resident set size (ru_maxrss)
above its size just before the first step. Times are medians over ``--repeats`` timed steps after warmup,
and over ``--rounds`` rounds that interleave the implementations (so machine noise hits all of them alike).

Implementations (all self-attention with the same weights layout, need_weights=False):
- ``lab``: lab.attention.MultiHeadAttention (fused QKV projection + scaled_dot_product_attention);
- ``torch``: torch.nn.MultiheadAttention(batch_first=True), called with need_weights=False (its fast path);
- ``naive``: the tutorial's recipe, matmul -> softmax -> matmul, materialising the (B, H, L, L) scores.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lab.attention import MultiHeadAttention

IMPLEMENTATIONS = ("lab", "torch", "naive")


class NaiveAttention(nn.Module):
    """Tutorial-style attention: explicit (B, H, L, L) scores, softmax, weighted sum."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = (f(x).view(b, t, self.heads, self.head_dim).transpose(1, 2) for f in (self.q, self.k, self.v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, L)
        out = scores.softmax(dim=-1) @ v  # (B, H, L, hd)
        return self.out(out.transpose(1, 2).reshape(b, t, -1))


def build(impl: str, width: int, heads: int) -> tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The module (to move and zero) and the self-attention call to time."""
    if impl == "lab":
        module = MultiHeadAttention(width, heads)
        return module, lambda x: module(x)[0]
    if impl == "torch":
        module = nn.MultiheadAttention(width, heads, batch_first=True)
        return module, lambda x: module(x, x, x, need_weights=False)[0]
    if impl == "naive":
        module = NaiveAttention(width, heads)
        return module, module
    raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLEMENTATIONS}")


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(impl: str, length: int, device: str, batch: int, width: int, heads: int, warmup: int, repeats: int, threads: int | None) -> dict:
    """One subprocess' worth of work: peak memory of one step, then timed steps."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    module, fn = build(impl, width, heads)
    module.to(device)
    x = torch.randn(batch, length, width, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step() -> None:
        fn(x).sum().backward()
        x.grad = None
        module.zero_grad(set_to_none=True)

    if device.startswith("cuda"):
        step()  # cuBLAS / kernel selection outside the measured peak
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        sync()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        base = _current_rss_bytes()
        step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    for _ in range(warmup):
        step()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"impl": impl, "length": length, "device": device, "times_s": times, "peak_bytes": max(peak, 0)}


def run_subprocess(args: argparse.Namespace, impl: str, length: int, device: str) -> dict:
    cmd = [
        sys.executable, "-m", "benchmarks.attention", "--worker", impl, str(length), device,
        "--batch", str(args.batch), "--width", str(args.width), "--heads", str(args.heads),
        "--warmup", str(args.warmup), "--repeats", str(args.repeats),
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"worker {impl} L={length} on {device} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(records: list[dict]) -> list[dict]:
    rows = []
    keys = sorted({(r["device"], r["length"]) for r in records}, key=lambda k: (k[0], k[1]))
    for device, length in keys:
        row: dict = {"device": device, "length": length}
        for impl in IMPLEMENTATIONS:
            mine = [r for r in records if r["device"] == device and r["length"] == length and r["impl"] == impl]
            if not mine:
                continue
            row[f"{impl}_ms"] = 1000 * statistics.median([t for r in mine for t in r["times_s"]])
            row[f"{impl}_peak_mib"] = statistics.median([r["peak_bytes"] for r in mine]) / 2**20
        if "lab_ms" in row and "torch_ms" in row:
            row["lab_vs_torch"] = row["lab_ms"] / row["torch_ms"]
        if "lab_ms" in row and "naive_ms" in row:
            row["naive_vs_lab"] = row["naive_ms"] / row["lab_ms"]
            row["memory_naive_vs_lab"] = row["naive_peak_mib"] / max(row["lab_peak_mib"], 1e-9)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    header = (
        "| device | L | lab ms | torch ms | naive ms | lab/torch time | naive/lab time | "
        "lab MiB | torch MiB | naive MiB |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['length']} | {r.get('lab_ms', float('nan')):.2f} | {r.get('torch_ms', float('nan')):.2f} | "
            f"{r.get('naive_ms', float('nan')):.2f} | {r.get('lab_vs_torch', float('nan')):.3f}x | "
            f"{r.get('naive_vs_lab', float('nan')):.2f}x | {r.get('lab_peak_mib', float('nan')):.0f} | "
            f"{r.get('torch_peak_mib', float('nan')):.0f} | {r.get('naive_peak_mib', float('nan')):.0f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5, help="timed steps per subprocess")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of subprocesses")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/attention.json"))
    p.add_argument("--worker", nargs=3, metavar=("IMPL", "LENGTH", "DEVICE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.width % args.heads:
        p.error(f"--width {args.width} must be divisible by --heads {args.heads}")
    if min(args.lengths) < 1 or args.repeats < 1 or args.rounds < 1:
        p.error("--lengths, --repeats and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        impl, length, device = args.worker
        result = measure(impl, int(length), device, args.batch, args.width, args.heads, args.warmup, args.repeats, args.threads)
        print(json.dumps(result))
        return
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    jobs = [(impl, length, device) for _ in range(args.rounds) for device in devices for length in args.lengths for impl in IMPLEMENTATIONS]
    records = []
    for i, (impl, length, device) in enumerate(jobs, 1):
        print(f"[{i}/{len(jobs)}] {impl:5s} L={length:<5d} {device}", file=sys.stderr, flush=True)
        records.append(run_subprocess(args, impl, length, device))
    rows = summarise(records)
    table = format_table(rows)
    print(table)
    meta = {
        "batch": args.batch, "width": args.width, "heads": args.heads, "repeats": args.repeats, "rounds": args.rounds,
        "threads": args.threads or torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(), "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"meta": meta, "summary": rows, "records": records}, indent=2))
    tmp.replace(args.out)
    print(f"\nsaved {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
