"""Experiment 4, *fine-tuning strategies across paradigms*: pretrain the fusion policy by behaviour cloning
(supervised, on the bot's demonstrations), then continue with PPO (reward only) under each of ``agents``'
strategies, against PPO from scratch.

- ``frozen``: the pretrained encoder stays fixed; the action and value heads train;
- ``top``: only the top encoder layer group (and the heads) train;
- ``discriminative``: everything trains, learning rates spread log-evenly from lr / 100 (embeddings) to lr
  (heads);
- ``full``: everything trains at one rate;
- ``scratch``: no pretraining, the same PPO.

The PPO policy has the cloned policy's architecture (behaviour cloning's fusion encoder, CLS state -> linear
action head, plus a linear value head) and the pretrained action head is loaded too (``load_head``), so every
fine-tuned policy starts as the cloned one and the curves start at its success rate; the PPO recipe and the
evaluation episodes are experiment 2's.
"""
from experiments.finetune import analysis
from experiments.finetune.plan import FinetuneBudget, jobs
from experiments.spec import Experiment

EXPERIMENT = Experiment("finetune", FinetuneBudget, jobs, analysis)
