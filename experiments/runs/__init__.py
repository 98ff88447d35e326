"""What one job of an experiment does: the job functions the engine calls, ``fn(run_dir, report, deps, **kwargs)
-> record``, each writing one run directory (``OUT/<experiment>/<variant>/seed<N>``) with the shared TensorBoard
tags, and returning the record the analysis reads.

- :mod:`~experiments.runs.supervised`: a supervised task trained by ``supervised.Trainer`` with a test curve;
- :mod:`~experiments.runs.rl`: an ``agents.AgentRun`` (PPO, A2C, MemoryPPO), resumable from its checkpoint;
- :mod:`~experiments.runs.bc`: the bot's demonstrations, and behaviour cloning on them;
- :mod:`~experiments.runs.baselines`: the untrained behaviour-cloning policy (the step-0 point of BC curves).

They know no experiment (no budget, no analysis): an experiment's plan builds their arguments.
"""
