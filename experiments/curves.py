"""Reading a learning curve (a list of evaluation points, e.g. ``{"samples": ..., "accuracy": ...}``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def first_crossing(curve: Sequence[dict[str, Any]], x_key: str, y_key: str, threshold: float) -> float | None:
    """The first ``x`` at which ``y >= threshold`` (None if never): samples / episodes / seconds to a target."""
    for point in curve:
        y = point.get(y_key)
        if y is not None and y >= threshold:
            return float(point[x_key])
    return None
