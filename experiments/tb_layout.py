"""A TensorBoard custom-scalars layout per experiment, so its comparison charts are one click away and first.

TensorBoard's default (Time Series) view lists every tag of every run alphabetically: ``charts/SPS`` first,
and one card per tag across all runs of the logdir. The custom-scalars dashboard shows the charts a layout
names instead. Each experiment writes its layout (``tensorboard_layout(results)`` of its analysis module:
``{category: [(chart title, [tag regex, ...]), ...]}``) as one event file in ``OUT/<experiment>/``; the plugin
merges the layouts of every experiment in the logdir, each under its own category. A chart's regexes select
tags (not runs), so a layout charts only tags that one task writes (test accuracy: digits; success rate:
BabyAI) and a chart never mixes unrelated tasks. Shared tags (episode length, label / reward counts, SPS) stay
in the default dashboards.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

LAYOUT_FILE = "events.out.tfevents.0.custom_scalars_layout"  # fixed name: a re-render replaces it
URL_FRAGMENT = "#custom_scalars"  # opens the custom-scalars dashboard (TensorBoard's default is Time Series)


def write_layout(exp_dir: Path, layout: Mapping[str, Sequence[tuple[str, Sequence[str]]]]) -> Path:
    """Write ``layout`` as ``exp_dir/LAYOUT_FILE`` (replacing an earlier one atomically); returns its path."""
    from torch.utils.tensorboard import SummaryWriter

    if not layout:
        raise ValueError("an experiment's TensorBoard layout needs at least one category")
    spec = {category: {title: ["Multiline", list(regexes)] for title, regexes in charts}
            for category, charts in layout.items()}
    exp_dir = Path(exp_dir)
    exp_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".layout-", dir=exp_dir))
    try:
        with SummaryWriter(str(scratch)) as writer:
            writer.add_custom_scalars(spec)
        (written,) = list(scratch.glob("events.out.tfevents.*"))
        target = exp_dir / LAYOUT_FILE
        written.replace(target)  # same filesystem: atomic, and replaces the previous layout
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
