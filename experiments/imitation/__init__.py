"""Experiment 2, *imitation vs RL* on BabyAI: behaviour cloning from the bot vs PPO, the same fusion encoder.

Behaviour cloning is the supervised task ``babyai_bc`` (:mod:`supervised.babyai_bc`): the bot's action at every
step of its demonstrations is a label. PPO learns from the level's reward alone, with the agents' BabyAI recipe
(``agents.presets.PRESETS["babyai-gotoredballgrey"]``: 32 envs, lr 5e-4 -> 0, entropy 0.005, MLP heads of 64 on
the summary and patch states). Both read the observation (view, direction, mission and the previous actions) with
the same fusion encoder (:mod:`experiments.babyai_recipe`: the view as 9 patch tokens, the previous actions as one
token, width 32); ``--budget.rl-readout cls`` gives PPO exactly the cloned policy's architecture instead (summary
state -> linear action head). Both are scored by the success rate on fresh episodes, never a demonstration's, with
actions sampled from the policy by default (a greedy policy can loop forever in a partially observed maze); PPO
plays other episodes at every evaluation.

The BabyAI paper's sample-efficiency table reports the minimum number of demonstrations (imitation) or of
episodes (RL) to reach 99% success. Here BC is trained on growing prefixes of one demo collection and PPO's
success is tracked against its training episodes, so both numbers are measured the same way; the paper's
ranges sit in their own column and on the plot.
"""
from experiments.imitation import analysis
from experiments.imitation.plan import ImitationBudget, jobs, settings
from experiments.spec import Experiment

EXPERIMENT = Experiment("imitation", ImitationBudget, jobs, analysis, settings)
