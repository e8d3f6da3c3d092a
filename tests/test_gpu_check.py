"""benchmarks/gpu_check.py where no GPU can be used: it says so and exits 0, at once."""
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_cuda_says_so_and_exits_0():
    # CUDA_VISIBLE_DEVICES='' hides any GPU, so this runs the same on a GPU machine.
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    t = time.monotonic()
    r = subprocess.run([sys.executable, str(REPO / 'benchmarks' / 'gpu_check.py')], capture_output=True,
                       text=True, env=env, cwd=str(REPO), timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'no CUDA device here' in r.stdout and 'nothing to check' in r.stdout
    assert 'torch' in r.stdout  # says why: the torch build and what it sees
    assert 'FAIL' not in r.stdout and '|' not in r.stdout  # no table of figures made up
    assert time.monotonic() - t < 120  # no photos written, no model built


def test_cuda_status_names_the_reason(monkeypatch):
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.gpu_check import cuda_status
    finally:
        sys.path.remove(str(REPO))
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    ok, why = cuda_status()
    assert not ok and torch.__version__ in why
