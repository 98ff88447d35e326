"""Every experiment of the lab, in one place: ``python -m experiments NAME`` runs ``EXPERIMENTS[NAME]``."""
from __future__ import annotations

from experiments.digits import EXPERIMENT as DIGITS
from experiments.finetune import EXPERIMENT as FINETUNE
from experiments.imitation import EXPERIMENT as IMITATION
from experiments.ladder import EXPERIMENT as LADDER
from experiments.offline import EXPERIMENT as OFFLINE
from experiments.optimizers import EXPERIMENT as OPTIMIZERS
from experiments.spec import Experiment

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (DIGITS, IMITATION, OPTIMIZERS, FINETUNE, LADDER, OFFLINE)}
FLAGSHIP = ("digits", "imitation")  # the README's main command: experiments 1 and 2 in quick mode
