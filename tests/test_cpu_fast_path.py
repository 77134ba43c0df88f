"""The CPU fast path: bfloat16 autocast only where the device computes it natively, fp32 weights and
optimiser, and chapter 1's cpu profile on a path that does not corrupt the heap."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import lib.training as training
from lib.data import Split
from lib.embedding_experiment import check_layout
from lib.training import Recipe, autocast, fit_classifier

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


@pytest.mark.parametrize("native", [True, False])
def test_autocast_is_on_exactly_where_amp_is_asked_and_bf16_is_native(monkeypatch, native):
    monkeypatch.setattr(training, "native_bf16", lambda device: native)
    layer = nn.Linear(8, 4)
    for amp in (True, False):
        with autocast(CPU, amp):
            out = layer(torch.randn(3, 8))
        assert out.dtype == (torch.bfloat16 if amp and native else torch.float32)


def test_the_fast_path_computes_a_product_as_bf16_inputs_with_fp32_accumulation(monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    torch.manual_seed(0)
    x, w = torch.randn(64, 256), torch.randn(256, 32)
    with autocast(CPU, True):
        fast = (x @ w).float()
    reference = x.bfloat16().double() @ w.bfloat16().double()  # the rounded inputs, multiplied exactly
    assert torch.allclose(fast.double(), reference, rtol=1e-2, atol=1e-2)  # one bf16 rounding of the result, no more
    assert not torch.allclose(fast, x @ w, rtol=1e-4, atol=1e-4)  # and it is not fp32 arithmetic


def test_training_on_the_fast_path_keeps_fp32_weights_and_learns(monkeypatch):
    monkeypatch.setattr(training, "native_bf16", lambda device: True)
    torch.manual_seed(0)
    labels = torch.randint(0, 2, (256,))
    images = (labels.view(-1, 1, 1, 1) * 200 + torch.randint(0, 50, (256, 1, 4, 4))).to(torch.uint8)  # two separable classes
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    report = fit_classifier(model, Split(images, labels), Recipe(epochs=5, lr=0.05, batch_size=32, amp=True), seed=0, device=CPU)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert report.losses[-1] < 0.5 * report.losses[0]


def test_chapter_1_refuses_nhwc_on_a_multi_thread_cpu_and_allows_the_safe_paths():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with pytest.raises(ValueError, match="channels_last=False, or run with BOOK_THREADS=1"):
            check_layout(CPU, channels_last=True)
        check_layout(CPU, channels_last=False)
        torch.set_num_threads(1)
        check_layout(CPU, channels_last=True)
    finally:
        torch.set_num_threads(threads)


SMALL_CASE = """
import sys, torch, yaml
from lib import embedding_experiment as ex
from lib.data import Split
from lib.models import StraightClassifier
from lib.training import Recipe, fit_classifier
threads, channels_last = int(sys.argv[2]), sys.argv[3] == "True"
torch.set_num_threads(threads)
params = {k: v for k, v in yaml.safe_load(open(sys.argv[1])).items() if k != "seeds"}
s = ex.Settings(**params)
ex.check_layout(torch.device("cpu"), channels_last)  # the chapter's own rule first
recipe = Recipe(epochs=2, lr=1e-3, batch_size=32, optimiser="nadam", amp=s.amp, channels_last=channels_last)
torch.manual_seed(0)
images, labels = torch.randint(0, 256, (93, 1, 28, 28), dtype=torch.uint8), torch.randint(0, 3, (93,))  # batches of 32, 32 and 29
fit_classifier(StraightClassifier(s.pyramid.config(3)), Split(images, labels), recipe, seed=0, device=torch.device("cpu"))
print("trained")
"""
PROFILE = ROOT / "chapters" / "profiles" / "01_embeddings_extendable_classification.cpu.yaml"


@pytest.mark.parametrize("threads, channels_last", [(1, True), (2, False), (1, "profile")])
def test_chapter_1s_network_trains_on_odd_batches_in_every_layout_its_rule_allows(threads, channels_last):
    """The small case of the heap corruption: chapter 1's network with the cpu profile's precision, a
    batch of 29 images, in each layout and thread count :func:`check_layout` lets through, the cpu
    profile's own among them (its single-thread workers). glibc's strict heap checks make a
    corruption fatal at once: NHWC on two threads dies here with a segmentation fault."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["amp"] is True  # the profile asks the fast path
    layout = profile["channels_last"] if channels_last == "profile" else channels_last
    env = {**os.environ, "MALLOC_CHECK_": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SMALL_CASE, str(PROFILE), str(threads), str(layout)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "trained" in done.stdout, f"exit {done.returncode}: {done.stderr[-2000:]}"
