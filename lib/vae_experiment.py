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
from .training import Checkpoint, fit_classifier, predict, seed_everything

MNIST_TRAIN, MNIST_TEST = 60_000, 10_000


def check_parameters(p: dict) -> None:
    """Range checks for chapter 4's parameters; raises ValueError naming the parameter and the fix."""
    for name in ("n_train", "n_val", "n_annotator", "n_test", "annotator_epochs", "epochs", "batch_size", "z_dim"):
        if p[name] < 1:
            raise ValueError(f"{name}={p[name]} must be at least 1")
    total = p["n_train"] + p["n_val"] + p["n_annotator"]
    if total > MNIST_TRAIN:
        raise ValueError(f"n_train + n_val + n_annotator = {total} exceeds MNIST's {MNIST_TRAIN} training images")
    if p["n_test"] > MNIST_TEST:
        raise ValueError(f"n_test={p['n_test']} exceeds MNIST's {MNIST_TEST} test images")
    if any(not isinstance(z, int) or z < 1 for z in p["z_dims"]):
        raise ValueError(f"z_dims {p['z_dims']} must all be integers of at least 1")
    if any(not isinstance(k, int) or k < 2 for k in p["budget_ks"]):
        raise ValueError(f"budget_ks {p['budget_ks']} must all be integers of at least 2 (clusters per round)")
    if p["lr"] <= 0 or p["beta"] < 0 or p["gamma"] < 0 or p["a"] < 0:
        raise ValueError("lr must be positive and beta, gamma, a non-negative")
    labelling_config(p)  # the method's own checks (k range, confidence, epochs)


def labelling_config(p: dict, **changes) -> LabellingConfig:
    """The method's settings from the chapter's parameters, with ``changes`` applied."""
    fields = dict(
        z_dim=p["z_dim"], hidden=tuple(p["hidden"]), beta=p["beta"], gamma=p["gamma"], epochs=p["epochs"],
        unsupervised_epochs=p["unsupervised_epochs"], lr=p["lr"], batch_size=p["batch_size"], k_min=p["k_min"],
        k_max=p["k_max"], valid_confidence=p["valid_confidence"], a=p["a"], elbow_sample=p["elbow_sample"],
    )
    fields.update(changes)
    return LabellingConfig(**fields)


@dataclass
class Splits:
    annotator: Split  # images (and labels) the simulated annotator learns from
    val: Split  # the paper's validation images: reconstruction accuracy
    train: Split  # the VAE's training images; their labels are used only to report label purity
    test: Split  # MNIST's test images, or a stratified subset of them


def make_splits(mnist: Dataset, n_train: int, n_val: int, n_annotator: int, n_test: int, seed: int) -> Splits:
    idx_annotator, idx_val, idx_train = stratified_split(mnist.train.labels, [n_annotator, n_val, n_train], seed=seed)[:3]
    test = mnist.test if n_test == len(mnist.test.labels) else take(mnist.test, stratified_split(mnist.test.labels, [n_test], seed=seed)[0])
    return Splits(take(mnist.train, idx_annotator), take(mnist.train, idx_val), take(mnist.train, idx_train), test)


def train_annotator(splits: Splits, *, epochs: int, seed: int, device: torch.device, checkpoint: Checkpoint) -> tuple[Annotator, float]:
    """The simulated person: a small CNN trained on the annotator split; returns it and its test accuracy."""
    seed_everything(seed)  # the initial weights too, not only the training order
    model = SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=16))
    state = checkpoint.load()
    if state is None:
        fit_classifier(model, splits.annotator, epochs=epochs, lr=3e-3, batch_size=64, seed=seed, device=device, desc="annotator")
        checkpoint.save({"model": model.state_dict()})
    else:
        model.load_state_dict(state["model"])
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
