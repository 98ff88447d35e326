import os

import pytest
import torch

# Small models on 2 cores: one intra-op thread is faster and leaves the other core to a parallel worker.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
