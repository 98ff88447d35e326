import json

import pytest
import torch

from lab.io import atomic_torch_save, atomic_write, write_json


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "state.pt"
    atomic_torch_save({"step": torch.tensor(1)}, path)

    def crash(f):
        f.write(b"half of a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert torch.load(path)["step"].item() == 1
    assert [p.name for p in path.parent.iterdir()] == ["state.pt"]


def test_write_json_replaces_whole_file(tmp_path):
    path = write_json(tmp_path / "results.json", {"accuracy": 0.5, "run_dir": tmp_path})
    write_json(path, {"accuracy": 0.9})
    assert json.loads(path.read_text()) == {"accuracy": 0.9}


@pytest.mark.parametrize("at", [1, 2, 3, 4, 5, 6])
def test_an_interrupt_inside_torch_save_surfaces_as_the_interrupt(tmp_path, at, interrupted_file):
    # torch's zip writer turns an interrupt after its first write into "RuntimeError: unexpected pos" while it
    # closes the archive; the CLIs' exit 130 / 143 (and the resume advice) depend on seeing the interrupt itself.
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": torch.tensor(1)}, path)
    with pytest.raises(KeyboardInterrupt, match="the signal handler"):
        atomic_write(path, lambda f: torch.save({"w": torch.ones(1000)},
                                                        interrupted_file(f, at, KeyboardInterrupt("the signal handler"))))
    assert torch.load(path)["step"].item() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
