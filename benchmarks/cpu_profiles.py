"""Candidate models for the ``cpu`` profiles: training images per second on this machine.

Each chapter's ``cpu`` profile uses all of the paper's images (or the whole stand-in) and must end
within about 90 minutes on a 2-core CPU (chapter 4's full profile already does: its own run card
gives its time). This measures, in one run, the candidates' training
throughput (forward, backward and an optimiser step on random batches of the chapter's image
shape: throughput does not depend on the pixels), and for chapter 1 the trunk's forward-only rate,
which the embedding layer's "trunk in every step" training runs at. The profiles' headers quote the
numbers and the wall time they imply.

Run: ``make benchmark`` or ``python benchmarks/cpu_profiles.py`` (about two minutes). Not a test: the numbers depend on
the machine.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from lib.models import FeatureClassifier, FeatureClassifierConfig, PyramidConfig, StraightClassifier
from lib.models.hierarchical import HierarchicalConfig, HierarchicalNet
from timing import images_per_second  # benchmarks/timing.py


def random_batches(shape: tuple[int, ...], classes: int, batch: int):
    x = torch.rand(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    while True:
        yield x, y


def training_rate(model: torch.nn.Module, shape: tuple[int, ...], classes: int, batch: int, steps: int) -> float:
    model = model.to(memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step(x, y):
        x = x.contiguous(memory_format=torch.channels_last)
        out = model(x)
        value = F.cross_entropy(out if torch.is_tensor(out) else out[1], y)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    return images_per_second(random_batches(shape, classes, batch), step, steps, torch.device("cpu"), warmup=3)


@torch.no_grad()
def forward_rate(model: torch.nn.Module, shape: tuple[int, ...], batch: int, steps: int) -> float:
    model = model.to(memory_format=torch.channels_last).eval()
    return images_per_second(random_batches(shape, 2, batch), lambda x, y: model(x.contiguous(memory_format=torch.channels_last)),
                             steps, torch.device("cpu"), warmup=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per candidate")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = []
    for fpn in (16, 32):
        config = PyramidConfig(backbone="small", in_channels=1, image_size=28, input_size=28, fpn_channels=fpn, hidden=64, num_classes=4)
        model = StraightClassifier(config)
        rows.append(("1", f"small pre-act ResNet + FPN {fpn}, 28 px, batch 32, train", training_rate(model, (1, 28, 28), 4, 32, args.steps)))
        rows.append(("1", f"  its trunk, forward only, batch 45 (15 triplets x 3)", forward_rate(model.trunk, (1, 28, 28), 45, args.steps)))
    for width in (8, 16, 24, 32):
        config = FeatureClassifierConfig(encoder="small", width=width, num_classes=10, head="soc", num_features=10)
        rows.append(("2", f"small CNN width {width}, SOC d=10, 32 px, batch 128", training_rate(FeatureClassifier(config), (3, 32, 32), 10, 128, args.steps)))
    for backbone in ("resnet_mini", "convnext_mini"):
        for size in (32, 64):
            config = HierarchicalConfig(backbone=backbone, num_super=3, num_sub=16, hidden=128)
            rows.append(("3", f"{backbone}, two heads, {size} px, batch 64", training_rate(HierarchicalNet(config), (3, size, size), 16, 64, args.steps)))
    print("| chapter | candidate | images/s |\n|---|---|---|")
    for chapter, what, rate in rows:
        print(f"| {chapter} | {what} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
