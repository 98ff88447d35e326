"""Reading a learning curve (a list of evaluation points, e.g. ``{"samples": ..., "accuracy": ...}``).

"Reached X": the first point whose value is at least X **and stays at least X at the next point** (read on other
episodes: RL evaluations play fresh episodes at every point). Taking the first point at or above X instead rewards
a lucky read of one sample: a policy at 98.9% reads >= 99% on 500 episodes about a third of the time, so the first
such read comes early (a GoToRedBall run read 99% at 98k steps on one fixed sample of 500 episodes, 2,000
episodes said 0.989-0.992 until 164k, another 500 first read it at 197k). The last point has no next one: a value
first reached there is not counted (reports say so).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

READ_RULE = ("the first evaluation at or above the threshold whose next evaluation is at or above it too (RL "
             "evaluations play other, fresh episodes each time; along a grid of demonstration counts the next count "
             "is the next evaluation); a threshold first reached at the last evaluation is not counted")
THRESHOLD_QUANTITY = re.compile(r" to (\d+%|the target)")  # a summary quantity read with the rule above


def first_crossing(curve: Sequence[dict[str, Any]], x_key: str, y_key: str, threshold: float) -> float | None:
    """The first ``x`` at which ``y >= threshold`` and the next point's ``y >= threshold`` too (module
    docstring); None if never."""
    points = [p for p in curve if p.get(y_key) is not None]
    for point, after in zip(points, points[1:]):
        if point[y_key] >= threshold and after[y_key] >= threshold:
            return float(point[x_key])
    return None


def first_read(curve: Sequence[dict[str, Any]], x_key: str, y_key: str, threshold: float) -> float | None:
    """The first ``x`` at which one read was ``>= threshold`` (unconfirmed): kept to show what the held rule
    changes, never as a result."""
    return next((float(p[x_key]) for p in curve if p.get(y_key) is not None and p[y_key] >= threshold), None)
