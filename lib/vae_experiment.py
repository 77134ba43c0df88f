"""Chapter 4's experiment around :mod:`lib.cluster_labelling`: data, annotator, judge, baselines.

The MNIST training set is cut four ways, stratified and seeded: images for the simulated
annotator, images for the judge of reconstructions (both never seen by the VAE), validation
images for reconstruction accuracy (the paper's §3.2 has 128; more resolve a smaller
difference) and the VAE's training images. The test set is MNIST's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cluster_labelling import Annotator, LabellingConfig, label_clusters, random_labelling
from .data import Dataset, Split, batches, stratified_split, take, to_unit
from .losses import weighted_cross_entropy
from .evaluation import accuracy
from .models import LabellingVAE, SmallCNN, SmallCNNConfig, VAEConfig
from .settings import RunSettings, distinct_positive, positive, run_settings, within_quick_budget
from .training import Checkpoint, Recipe, fit_classifier, predict, seed_everything

MNIST_TRAIN, MNIST_TEST = 60_000, 10_000

# The ways to label the training images that the chapter compares (names of its results, imported by the chapter).
CLUSTER_CENTRES = "cluster centres (the paper)"
RANDOM_IMAGES = "random images, as many labels, as much supervision"
LABELS_ALONE = "random images, a classifier trained on them alone"
PIXEL_KMEANS = "k-means on raw pixels"


@dataclass(frozen=True)
class DataSplit:
    """How MNIST is cut: the annotator's images, the validation images, the VAE's, the test images."""

    split_seed: int = 0  # seed of the stratified split
    n_train: int = 8000  # VAE training images, labels unused (paper §3.1: 59,872)
    n_val: int = 1000  # validation images for reconstruction accuracy (paper §3.2: 128)
    n_annotator: int = 5000  # images the simulated annotator learns from, never seen by the VAE
    n_judge: int = 5000  # images the judge of reconstructions learns from, seen by neither
    n_test: int = 2000  # MNIST test images, a stratified subset (paper: all 10,000)

    def __post_init__(self):
        positive(n_train=self.n_train, n_val=self.n_val, n_annotator=self.n_annotator, n_judge=self.n_judge, n_test=self.n_test)
        total = self.n_train + self.n_val + self.n_annotator + self.n_judge
        if total > MNIST_TRAIN:
            raise ValueError(f"n_train + n_val + n_annotator + n_judge = {total} exceeds MNIST's {MNIST_TRAIN} training images")
        if self.n_test > MNIST_TEST:
            raise ValueError(f"n_test={self.n_test} exceeds MNIST's {MNIST_TEST} test images")


@dataclass(frozen=True)
class Sweeps:
    """The settings swept around the method: Fig. 5's latent sizes, and forced cluster counts."""

    z_dims: tuple[int, ...] = (2, 10)  # Fig. 5: latent dimensions swept with gamma = 0
    budget_ks: tuple[int, ...] = ()  # clusters per round forced to these k, for accuracy against labels spent

    def __post_init__(self):
        distinct_positive("z_dims", self.z_dims)
        if any(not isinstance(k, int) or k < 2 for k in self.budget_ks):
            raise ValueError(f"budget_ks {list(self.budget_ks)} must all be integers of at least 2 (clusters per round)")


@dataclass(frozen=True)
class Settings:
    run: RunSettings
    data: DataSplit
    annotator: Recipe  # the simulated annotator's training (and the judge's)
    method: LabellingConfig  # the paper's method: VAE, Eqs. (1)-(3), clustering and labelling
    sweeps: Sweeps

    def __post_init__(self):
        within_quick_budget(self.run, work(self), QUICK_WORK, QUICK_MINUTES)


def work(s: Settings) -> float:
    """What the settings ask, in images through a network (relative units): every VAE training of
    every seed (its MLP's size relative to the paper's), and the annotator's and the judge's."""
    m = s.method
    widths = [784, *m.hidden, m.z_dim]
    mlp = sum(a * b for a, b in zip(widths[:-1], widths[1:])) / 468_000  # the paper's encoder (512, 128, 32) is 1
    vaes = 2 + len(s.sweeps.z_dims) + (s.method.z_dim not in s.sweeps.z_dims) + 2 * len(s.sweeps.budget_ks)  # semi, random, plain per z, forced k
    readers = 2 * (s.data.n_annotator + s.data.n_judge) * s.annotator.epochs  # small CNNs, about twice the MLP's cost an image
    return len(s.run.seeds) * s.data.n_train * m.epochs * vaes * mlp + readers


QUICK_WORK = 523_446  # work() of the chapter's quick defaults (a test keeps the two in step)
QUICK_MINUTES = 2.0  # their wall time on a 2-core CPU, measured

def make_settings(*, profile, seeds, device, results_root, split_seed, n_train, n_val, n_annotator, n_judge, n_test, annotator_epochs,
                  z_dim, hidden, beta, gamma, epochs, unsupervised_epochs, lr, batch_size, k_min, k_max, elbow_sample,
                  valid_confidence, a, z_dims, budget_ks) -> Settings:
    """Chapter 4's settings from its parameters; a value out of range raises ValueError naming it."""
    positive(z_dim=z_dim, epochs=epochs, batch_size=batch_size)
    if not lr > 0 or beta < 0 or gamma < 0 or a < 0:
        raise ValueError(f"lr={lr} must be positive and beta={beta}, gamma={gamma}, a={a} non-negative")
    return Settings(
        run=run_settings(profile, seeds, device, results_root),
        data=DataSplit(split_seed, n_train, n_val, n_annotator, n_judge, n_test),
        annotator=Recipe(epochs=annotator_epochs, lr=3e-3, batch_size=64),
        method=LabellingConfig(z_dim=z_dim, hidden=tuple(hidden), beta=beta, gamma=gamma, epochs=epochs,
                               unsupervised_epochs=unsupervised_epochs, lr=lr, batch_size=batch_size, k_min=k_min, k_max=k_max,
                               valid_confidence=valid_confidence, a=a, elbow_sample=elbow_sample),
        sweeps=Sweeps(tuple(z_dims), tuple(budget_ks)),
    )


@dataclass
class Splits:
    annotator: Split  # images (and labels) the simulated annotator learns from
    judge: Split  # images the judge of reconstructions learns from
    val: Split  # validation images: reconstruction accuracy
    train: Split  # the VAE's training images; their labels are used only to report label purity
    test: Split  # MNIST's test images, or a stratified subset of them


def make_splits(mnist: Dataset, data: DataSplit) -> Splits:
    seed = data.split_seed
    sizes = [data.n_annotator, data.n_val, data.n_train, data.n_judge]
    idx_annotator, idx_val, idx_train, idx_judge = stratified_split(mnist.train.labels, sizes, seed=seed)[:4]
    test = (mnist.test if data.n_test == len(mnist.test.labels)
            else take(mnist.test, stratified_split(mnist.test.labels, [data.n_test], seed=seed)[0]))
    return Splits(take(mnist.train, idx_annotator), take(mnist.train, idx_judge), take(mnist.train, idx_val), take(mnist.train, idx_train), test)


def train_annotator(images: Split, test: Split, recipe: Recipe, *, seed: int, device: torch.device, checkpoint: Checkpoint | None,
                    desc: str = "annotator") -> tuple[Annotator, float]:
    """A digit reader: a small CNN trained on ``images`` (the annotator's split, or the judge's);
    returns it and its accuracy on ``test``."""
    seed_everything(seed)  # the initial weights too, not only the training order
    model = SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=16))
    fit_classifier(model, images, recipe, seed=seed, device=device, checkpoint=checkpoint, desc=desc)
    model.to(device).eval()
    return Annotator(model), accuracy(predict(model, test.images), test.labels)


def supervised_steps(config: LabellingConfig, n_train: int) -> int:
    """How many optimiser steps of the method use labels: every step after the unsupervised epochs."""
    return (config.epochs - config.unsupervised_epochs) * -(-n_train // config.batch_size)


def train_on_labels_alone(splits: Splits, annotator: Annotator, config: LabellingConfig, n_labels: int, *, seed: int,
                          device: torch.device) -> dict:
    """Baseline: the annotator labels ``n_labels`` random training images (the same ones as the random
    baseline of :func:`lib.cluster_labelling.train_labelling_vae` for this seed), and a classifier with
    the method's own classification path (the VAE's encoder to the mean of z, then the softmax head)
    is trained on them alone, with the annotator's confidences as weights, for as many steps as the
    method trains with labels. Returns its test accuracy and the labels spent."""
    before = annotator.labels_given
    labelling = random_labelling(len(splits.train.labels), splits.train.images, annotator, n_labels, seed)
    rows = torch.nonzero(labelling.targets >= 0).flatten()
    generator = seed_everything(seed)
    net = LabellingVAE(VAEConfig(z_dim=config.z_dim, hidden=tuple(config.hidden), image_shape=tuple(splits.train.images.shape[1:]))).to(device)
    opt = torch.optim.Adam([*net.encoder.parameters(), *net.to_mu.parameters(), *net.head.parameters()], lr=config.lr)
    images, targets, weights = splits.train.images[rows].to(device), labelling.targets[rows].to(device), labelling.weights[rows].to(device)
    net.train()
    for _ in range(supervised_steps(config, len(splits.train.labels))):
        pick = torch.randint(len(rows), (config.batch_size,), generator=generator).to(device)
        logits = net.forward_head(net.encode(to_unit(images[pick]))[0])
        loss = weighted_cross_entropy(logits, targets[pick], weights[pick])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        mu = torch.cat([net.encode(x.to(device))[0] for (x,) in batches(splits.test.images, batch_size=2048, shuffle=False)])
        acc = accuracy(net.forward_head(mu).cpu(), splits.test.labels)
    return {"test_accuracy": acc, "labels_given": annotator.labels_given - before}


def pixel_kmeans_baseline(splits: Splits, annotator: Annotator, config: LabellingConfig, seed: int) -> dict:
    """Beyond the paper: the same clustering and labelling on raw pixels, no VAE.

    Centres are mean images, shown to the annotator as they are; a test image takes the label of
    the nearest valid centre.
    """
    before = annotator.labels_given
    pixels = to_unit(splits.train.images).flatten(1)
    shape = splits.train.images.shape[1:]
    labelling = label_clusters(pixels, lambda c: c.view(-1, *shape).clamp(0, 1), annotator, config, seed)
    valid = labelling.valid(config.valid_confidence)
    if valid.any():
        test = to_unit(splits.test.images).flatten(1)
        nearest = torch.cdist(test, labelling.centres[valid]).argmin(1)
        accuracy_ = float((labelling.centre_labels[valid][nearest] == splits.test.labels).float().mean())
    else:  # the annotator could read no centre: no test image can be labelled
        accuracy_ = 0.0
    return {
        "test_accuracy": accuracy_,
        "labels_given": annotator.labels_given - before,
        "k": labelling.k,
    }
