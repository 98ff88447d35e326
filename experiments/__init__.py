"""Experiments that put deep (supervised) learning and reinforcement learning side by side on the same blocks.

    python -m experiments flagship        # experiments 1 + 2 in quick mode: a few minutes on 2 CPU cores
    python -m experiments --help          # digits, imitation, optimizers, finetune, flagship, report

1. :mod:`experiments.digits`: one separable-conv net on digits, labels (cross-entropy) vs rewards (PPO, A2C);
2. :mod:`experiments.imitation`: BabyAI, behaviour cloning from the bot vs PPO, next to the BabyAI paper;
3. :mod:`experiments.optimizers`: the optimizers of ``lab.optim`` in both paradigms (``--tune-trials``: Ray Tune);
4. :mod:`experiments.finetune`: a behaviour-cloned encoder fine-tuned by PPO under each strategy vs scratch.

Each experiment is a package: ``plan.py`` (its budget and jobs), ``analysis.py`` (summary rows, plots, report from
``results.json`` alone) and, in ``__init__.py``, its :class:`experiments.spec.Experiment` record, listed in
:mod:`experiments.registry`. Below them, from the bottom up: :mod:`experiments.engine` (jobs as Ray tasks or in
this process, resumable, with a live display; it knows no experiment), :mod:`experiments.runs` (one run of each
paradigm into ``OUT/<experiment>/<variant>/seed<N>``), and the shared parts of the analyses
(:mod:`~experiments.summary` rows, :mod:`~experiments.stats`, :mod:`~experiments.curves`,
:mod:`~experiments.plots`, :mod:`~experiments.report`, :mod:`~experiments.results` files,
:mod:`~experiments.tb_layout`). Above them: :mod:`experiments.pipeline` (plan, run, write results, render) and
:mod:`experiments.cli`.
"""
