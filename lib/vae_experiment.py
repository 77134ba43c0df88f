"""Chapter 4's experiment around :mod:`lib.cluster_labelling`: data, annotator, baselines, checks.

The MNIST training set is cut three ways, stratified and seeded: images for
the simulated annotator (never seen by the VAE), the paper's 128 validation
images (§3.2) and the VAE's training images. The test set is MNIST's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .cluster_labelling import Annotator, LabellingConfig, label_clusters
from .data import Dataset, Split, stratified_split, take, to_unit
from .evaluation import accuracy
from .models import SmallCNN, SmallCNNConfig
from .settings import RunSettings, distinct_positive, positive, run_settings
from .training import Checkpoint, Recipe, fit_classifier, predict, seed_everything

MNIST_TRAIN, MNIST_TEST = 60_000, 10_000

# The ways to label the training images that the chapter compares (names of its results, imported by the chapter).
CLUSTER_CENTRES = "cluster centres (the paper)"
RANDOM_IMAGES = "random images, same labels"
PIXEL_KMEANS = "k-means on raw pixels"


@dataclass(frozen=True)
class DataSplit:
    """How MNIST is cut: the annotator's images, the validation images, the VAE's, the test images."""

    split_seed: int = 0  # seed of the stratified split
    n_train: int = 8000  # VAE training images, labels unused (paper §3.1: 59,872)
    n_val: int = 128  # validation images for reconstruction accuracy (paper §3.2: 128)
    n_annotator: int = 5000  # images the simulated annotator learns from, never seen by the VAE
    n_test: int = 2000  # MNIST test images, a stratified subset (paper: all 10,000)

    def __post_init__(self):
        positive(n_train=self.n_train, n_val=self.n_val, n_annotator=self.n_annotator, n_test=self.n_test)
        total = self.n_train + self.n_val + self.n_annotator
        if total > MNIST_TRAIN:
            raise ValueError(f"n_train + n_val + n_annotator = {total} exceeds MNIST's {MNIST_TRAIN} training images")
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
    annotator: Recipe  # the simulated annotator's training
    method: LabellingConfig  # the paper's method: VAE, Eqs. (1)-(3), clustering and labelling
    sweeps: Sweeps


def make_settings(*, profile, seeds, device, results_root, split_seed, n_train, n_val, n_annotator, n_test, annotator_epochs,
                  z_dim, hidden, beta, gamma, epochs, unsupervised_epochs, lr, batch_size, k_min, k_max, elbow_sample,
                  valid_confidence, a, z_dims, budget_ks) -> Settings:
    """Chapter 4's settings from its parameters; a value out of range raises ValueError naming it."""
    positive(z_dim=z_dim, epochs=epochs, batch_size=batch_size)
    if not lr > 0 or beta < 0 or gamma < 0 or a < 0:
        raise ValueError(f"lr={lr} must be positive and beta={beta}, gamma={gamma}, a={a} non-negative")
    return Settings(
        run=run_settings(profile, seeds, device, results_root),
        data=DataSplit(split_seed, n_train, n_val, n_annotator, n_test),
        annotator=Recipe(epochs=annotator_epochs, lr=3e-3, batch_size=64),
        method=LabellingConfig(z_dim=z_dim, hidden=tuple(hidden), beta=beta, gamma=gamma, epochs=epochs,
                               unsupervised_epochs=unsupervised_epochs, lr=lr, batch_size=batch_size, k_min=k_min, k_max=k_max,
                               valid_confidence=valid_confidence, a=a, elbow_sample=elbow_sample),
        sweeps=Sweeps(tuple(z_dims), tuple(budget_ks)),
    )


@dataclass
class Splits:
    annotator: Split  # images (and labels) the simulated annotator learns from
    val: Split  # the paper's validation images: reconstruction accuracy
    train: Split  # the VAE's training images; their labels are used only to report label purity
    test: Split  # MNIST's test images, or a stratified subset of them


def make_splits(mnist: Dataset, data: DataSplit) -> Splits:
    seed = data.split_seed
    idx_annotator, idx_val, idx_train = stratified_split(mnist.train.labels, [data.n_annotator, data.n_val, data.n_train], seed=seed)[:3]
    test = (mnist.test if data.n_test == len(mnist.test.labels)
            else take(mnist.test, stratified_split(mnist.test.labels, [data.n_test], seed=seed)[0]))
    return Splits(take(mnist.train, idx_annotator), take(mnist.train, idx_val), take(mnist.train, idx_train), test)


def train_annotator(splits: Splits, recipe: Recipe, *, seed: int, device: torch.device, checkpoint: Checkpoint) -> tuple[Annotator, float]:
    """The simulated person: a small CNN trained on the annotator split; returns it and its test accuracy."""
    seed_everything(seed)  # the initial weights too, not only the training order
    model = SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=16))
    fit_classifier(model, splits.annotator, recipe, seed=seed, device=device, checkpoint=checkpoint, desc="annotator")
    model.to(device).eval()
    return Annotator(model), accuracy(predict(model, splits.test.images), splits.test.labels)


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
