"""Training images per second: the library's in-memory batches against a torchvision DataLoader.

Same model (chapter 4's VAE), same data (MNIST training images), same optimiser and batch size;
only the way batches are made differs. Run: `make benchmark` (or `python benchmarks/batching.py`).
Not a test: the ratio depends on the machine. It prints one table and the ratio, measured in one run.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

import torch
import torchvision
from torch.utils.data import DataLoader

from lib.data import batches, load_mnist
from lib.losses import vae_loss
from lib.models import LabellingVAE, VAEConfig
from lib.training import pick_device
from timing import images_per_second  # benchmarks/timing.py


def step_fn(device):
    torch.manual_seed(0)
    model = LabellingVAE(VAEConfig()).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

    def step(x):
        out = model(x)
        loss = vae_loss(out.recon_logits, x, out.mu, out.logvar, beta=5.0).total
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def torchvision_root(mnist) -> Path:
    """A folder laid out as torchvision's MNIST expects, unpacked from the verified files."""
    root = Path(tempfile.mkdtemp())
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in mnist.provenance["files"]:
        with gzip.open(path, "rb") as src, open(raw / Path(path).stem, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = pick_device(args.device)
    mnist = load_mnist()
    n_epochs = args.steps * args.batch_size // len(mnist.train.images) + 2

    images = mnist.train.images.to(device)
    generator = torch.Generator().manual_seed(0)
    ours = ((x,) for _ in range(n_epochs) for (x,) in batches(images, batch_size=args.batch_size, shuffle=True, generator=generator))
    ours_rate = images_per_second(ours, step_fn(device), args.steps, device, warmup=20)

    root = torchvision_root(mnist)
    dataset = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=torchvision.transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)
    theirs = ((x,) for _ in range(n_epochs) for x, _ in loader)
    theirs_rate = images_per_second(theirs, step_fn(device), args.steps, device, warmup=20)
    shutil.rmtree(root)

    print(f"device {device}, batch {args.batch_size}, {args.steps} timed steps, torch {torch.__version__}")
    print("| pipeline | training images / s |\n|---|---|")
    print(f"| lib.data.batches (uint8 tensor on the device) | {ours_rate:,.0f} |")
    print(f"| torchvision MNIST + DataLoader ({args.workers} workers) | {theirs_rate:,.0f} |")
    print(f"ratio: {ours_rate / theirs_rate:.2f}x")


if __name__ == "__main__":
    main()
