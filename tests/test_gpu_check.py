"""benchmarks/gpu_check.py: its dry run (every section at toy sizes on the CPU) works, so a GPU machine can trust it."""

import subprocess
import sys

import pytest

from helpers.utils import paths


@pytest.mark.e2e
def test_gpu_check_dry_run_runs_every_section_and_cites_its_sources(tmp_path):
    out = subprocess.run([sys.executable, str(paths.PROJECT_ROOT / "benchmarks" / "gpu_check.py"), "--dry-run",
                          "--home", str(tmp_path / "home")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "FAILED" not in text
    for section in ("== make_run", "== b4", "== small", "== oom", "== continuation", "== ddp", "== summary"):
        assert section in text
    assert "note: out of memory at batch 8: trained in micro-batches" in text  # the micro-batching path ran
    assert "then init=best -p device cuda -p batch_size 16 | cycle 2 on cpu from cycle 1" in text
    assert "DDP: 2 process(es), gloo | cycle 1 on 2 × CPU" in text
    assert "github.com/huggingface/pytorch-image-models" in text and "github.com/NVIDIA/DeepLearningExamples" in text
