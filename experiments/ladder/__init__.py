"""The BabyAI ladder (issue 19): labels vs rewards level by level, up the BabyAI paper's ladder of levels.

The BabyAI paper's sample-efficiency table (BabyAI 1.0, Table 3) gives, per level, the fewest demonstrations
imitation needs and the fewest episodes RL needs for 99% success; going up the ladder the two part ways. Here, per
level and seed: behaviour cloning of the bot on growing collections of its demonstrations (a doubling grid, each
seed its own collection) until the success rate reaches the target and keeps it at the next count, and PPO from the
level's reward alone until its success reaches the target and keeps it at the next evaluation (every evaluation on
fresh episodes); both on the same fusion encoder. Quick mode: the protocol on the easiest level in minutes;
``--full``: GoToRedBallGrey to PutNextLocal, resumable across sessions (``--resume``).
"""
from experiments.ladder import analysis
from experiments.ladder.plan import LadderBudget, jobs, settings
from experiments.spec import Experiment

EXPERIMENT = Experiment("ladder", LadderBudget, jobs, analysis, settings)
