"""The experiments' job engine, in parts named for what they hold; it runs any jobs and knows no experiment.

- :mod:`~experiments.engine.jobs`: :class:`Job` (a picklable call and the jobs it needs), ordering, execution;
- :mod:`~experiments.engine.markers`: a job's state on disk (finished, interrupted), what ``--resume`` reads;
- :mod:`~experiments.engine.signals`: SIGINT / SIGTERM, :class:`Interrupted`;
- :mod:`~experiments.engine.inline`: every job in this process (``--workers 0``);
- :mod:`~experiments.engine.connect`: Ray started or joined (bounded, interruptible), :class:`NotConnected`;
  :mod:`~experiments.engine.reaper`: what is left of a local instance killed when its driver dies;
- :mod:`~experiments.engine.ray_runner`: jobs as Ray tasks, on a local instance or a cluster;
- :mod:`~experiments.engine.display`: the live view; :mod:`~experiments.engine.run`: :func:`run_jobs`.
"""
from experiments.engine.connect import CONNECT_TIMEOUT_S, NotConnected
from experiments.engine.jobs import Job, Outcome, Report
from experiments.engine.markers import ResumeMismatchError
from experiments.engine.run import cpu_seconds, run_jobs
from experiments.engine.signals import Interrupted

__all__ = ["CONNECT_TIMEOUT_S", "Interrupted", "Job", "NotConnected", "Outcome", "Report", "ResumeMismatchError",
           "cpu_seconds", "run_jobs"]
