import subprocess
import sys


def test_lab_imports_only_torch_and_numpy():
    """`import lab` must work for someone without SB3, Gymnasium, minigrid or scikit-learn."""
    code = (
        "import sys, lab, lab.data;"
        "heavy = {'gymnasium', 'stable_baselines3', 'sklearn', 'minigrid', 'mnist1d', 'tensorboard', 'matplotlib', 'scipy'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
