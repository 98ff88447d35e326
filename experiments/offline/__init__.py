"""The third paradigm (issue 20): learning from logged trajectories of mixed quality, between labels and rewards.

Behaviour policies of known quality (the bot, the bot with random actions, a random policy, an early PPO
checkpoint) log episodes with their returns; mixtures of them, from expert-only to mostly noise, are written as
Minari datasets. On each: behaviour cloning (every action a label), %BC (only the best episodes by return) and a
Decision Transformer (RL cast as sequence modelling: trained like a supervised decoder, acting on a return it is
asked for), all on the fusion encoder the other paradigms use; PPO online is the reward-only reference, its
episodes counted. Quick mode in minutes; ``--full`` on the Ray engine, resumable.
"""
from experiments.offline import analysis
from experiments.offline.plan import OfflineBudget, jobs, settings
from experiments.spec import Experiment

EXPERIMENT = Experiment("offline", OfflineBudget, jobs, analysis, settings)
