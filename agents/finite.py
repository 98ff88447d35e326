"""NaN and inf in RL: where a batch of observations or rewards (one row per env) holds one, and the error that
stops a run, or an evaluation, before it spreads into the policy."""
from __future__ import annotations

from typing import Any

import numpy as np


class NonFiniteError(RuntimeError):
    """Training or evaluation met a NaN or inf (an observation, a reward, a gradient) and stopped."""


def non_finite_rows(values: Any, what: str) -> str:
    """Where a batch of ``what`` (an array or a dict of arrays, one row per env) holds NaN / inf, e.g. "nan in
    the observations['x'] (envs 0, 3)"; "" when nowhere (integer arrays cannot)."""
    if values is None:
        return ""
    if isinstance(values, dict):
        return "; ".join(text for key, v in values.items() if (text := non_finite_rows(v, f"{what}[{key!r}]")))
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
        return ""
    rows = np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1)) if array.ndim else np.array([0])
    kinds = " and ".join(k for k, test in (("nan", np.isnan), ("inf", np.isinf)) if test(array).any())
    envs = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
    return f"{kinds} in the {what} (env{'s' if len(rows) > 1 else ''} {envs})"
