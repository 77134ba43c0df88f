"""Augmented CIFAR training images per second: batched augmentation on the device against a DataLoader.

Same model (a ResNet-18 in its CIFAR form, or the small encoder), same CIFAR-10 images, same
augmentation (random 32 x 32 crop after 4 pixels of zero padding, horizontal flip), same optimiser
and batch size. Only the way augmented batches are made differs:

* ours: the training set as one uint8 tensor on the device, :func:`lib.data.batches` and
  :func:`lib.data.random_crop_flip` on whole batches there (no per-sample Python);
* theirs: a ``Dataset`` returning one image at a time through torchvision's ``RandomCrop`` and
  ``RandomHorizontalFlip``, batched by a ``DataLoader`` with worker processes.

Run: ``make benchmark`` (or ``python benchmarks/cifar_augmentation.py --encoder resnet18`` on a GPU).
Not a test: the ratio depends on the machine. It prints one table and the ratio, measured in one run.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from lib.data import batches, load_cifar10, random_crop_flip
from lib.models import FeatureClassifier, FeatureClassifierConfig
from lib.training import pick_device
from timing import images_per_second  # benchmarks/timing.py


class AugmentedImages(Dataset):
    """One uint8 CIFAR image at a time, cropped and flipped by torchvision, as float in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def step_fn(encoder: str, device: torch.device, channels_last: bool):
    torch.manual_seed(0)
    model = FeatureClassifier(FeatureClassifierConfig(encoder=encoder, head="softmax")).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    use_amp = device.type == "cuda"

    def step(x, y):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="small", choices=["small", "resnet18"])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    channels_last = True
    cifar = load_cifar10()
    n_epochs = (args.steps + 10) * args.batch_size // len(cifar.train.labels) + 2

    images, labels = cifar.train.images.to(device), cifar.train.labels.to(device)
    generator = torch.Generator().manual_seed(0)
    ours = ((random_crop_flip(x, 4, generator), y) for _ in range(n_epochs)
            for x, y in batches(images, labels, batch_size=args.batch_size, shuffle=True, generator=generator))
    ours_rate = images_per_second(ours, step_fn(args.encoder, device, channels_last), args.steps, device, warmup=10)

    loader = DataLoader(AugmentedImages(cifar.train.images, cifar.train.labels), batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    theirs = (batch for _ in range(n_epochs) for batch in loader)
    theirs_rate = images_per_second(theirs, step_fn(args.encoder, device, channels_last), args.steps, device, warmup=10)

    print(f"device {device}, encoder {args.encoder}, batch {args.batch_size}, {args.steps} timed steps, torch {torch.__version__}, "
          f"data {cifar.provenance['format']}")
    print("| pipeline | augmented training images / s |\n|---|---|")
    print(f"| lib.data.batches + random_crop_flip (uint8 tensor on the device) | {ours_rate:,.0f} |")
    print(f"| torchvision RandomCrop + RandomHorizontalFlip per image, DataLoader ({args.workers} workers) | {theirs_rate:,.0f} |")
    print(f"ratio: {ours_rate / theirs_rate:.2f}x")


if __name__ == "__main__":
    main()
