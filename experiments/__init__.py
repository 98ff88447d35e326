"""Experiments that put deep (supervised) learning and reinforcement learning side by side on the same blocks.

    python -m experiments flagship        # experiments 1 + 2 in quick mode: a few minutes on 2 CPU cores
    python -m experiments --help          # digits, imitation, optimizers, finetune, flagship, report

1. :mod:`experiments.digits`: one separable-conv net on digits, labels (cross-entropy) vs rewards (PPO, A2C);
2. :mod:`experiments.imitation`: BabyAI, behaviour cloning from the bot vs PPO, next to the BabyAI paper;
3. :mod:`experiments.optimizers`: the optimizers of ``lab.optim`` in both paradigms;
4. :mod:`experiments.finetune`: a behaviour-cloned encoder fine-tuned by PPO under each strategy vs scratch.

Shared machinery: :mod:`experiments.runner` (independent runs as Ray tasks on a local instance or a
cluster, resumable after an interrupt, with a live display), :mod:`experiments.supervised_runs` /
:mod:`experiments.rl_runs` (one run of each paradigm into ``runs/experiments/<experiment>/<variant>/seed<N>``
with the shared TensorBoard tags and a test / success curve), :mod:`experiments.bc` (behaviour cloning),
:mod:`experiments.tuning` (learning rates tuned by Ray Tune), :mod:`experiments.pipeline` (results files, then
plots and report rendered from ``results.json``), :mod:`experiments.common` and :mod:`experiments.stats` (numbers
over seeds).
"""
