"""Chapter 2's experiment: the feature-dimension sweep, a new class on a frozen model, certainty.

Every training is :func:`lib.training.fit_classifier` with the model's own loss
(:meth:`lib.models.FeatureClassifier.loss`: the SOC loss or cross-entropy), batches augmented on
their device (random crop with 4 pixels of padding, horizontal flip), SGD with Nesterov momentum
and a one-cycle learning rate: the usual strong CIFAR recipe, the same for both heads.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from .data import (
    Dataset,
    Split,
    load_cifar10,
    load_cifar100,
    random_crop_flip,
    select_classes,
    stratified_split,
    take,
)
from .evaluation import accuracy
from .models import FeatureClassifier, FeatureClassifierConfig
from .soc import soc_loss
from .training import Checkpoint, FitReport, fit_classifier, predict, seed_everything

DATASETS = {"cifar10": load_cifar10, "cifar100": load_cifar100}
SIZES = {"cifar10": (50_000, 10_000, 10), "cifar100": (50_000, 10_000, 100)}  # train, test, classes


def check_parameters(p: dict) -> None:
    """Range checks for chapter 2's parameters; raises ValueError naming the parameter and the fix."""
    for name in ("n_train", "n_test", "epochs", "batch_size", "width", "new_class_steps"):
        if p[name] < 1:
            raise ValueError(f"{name}={p[name]} must be at least 1")
    if p["n_train"] > 50_000 or p["n_test"] > 10_000:
        raise ValueError(f"n_train={p['n_train']} and n_test={p['n_test']} must be at most CIFAR's 50,000 and 10,000 images")
    for name in ("cifar10_features", "cifar100_features"):
        if not p[name] or any(not isinstance(d, int) or d < 1 for d in p[name]) or len(set(p[name])) != len(p[name]):
            raise ValueError(f"{name} {p[name]} must be distinct integers of at least 1")
    for name in ("ood_features", "picture_features"):
        if p[name] not in p["cifar10_features"]:
            raise ValueError(f"{name}={p[name]} must be one of cifar10_features {p['cifar10_features']} (its model is trained there)")
    if not 0 <= p["held_out_class"] < 10:
        raise ValueError(f"held_out_class={p['held_out_class']} must be a CIFAR-10 label, 0..9")
    pair = p["pair_classes"]
    if len(pair) != 2 or len(set(pair)) != 2 or any(not 0 <= c < 10 for c in pair):
        raise ValueError(f"pair_classes {pair} must be two different CIFAR-10 labels, 0..9")
    if p["lr"] <= 0 or p["weight_decay"] < 0:
        raise ValueError("lr must be positive and weight_decay non-negative")
    FeatureClassifierConfig(encoder=p["encoder"], width=p["width"])  # the model's own checks


def subsets(dataset: Dataset, n_train: int, n_test: int, seed: int) -> tuple[Split, Split]:
    """Stratified, seeded subsets of the training and test sets (all of them when n is the full size)."""
    def cut(split: Split, n: int) -> Split:
        return split if n >= len(split.labels) else take(split, stratified_split(split.labels, [n], seed=seed)[0])

    return cut(dataset.train, n_train), cut(dataset.test, n_test)


def train_model(train: Split, p: dict, *, head: str, num_features: int, num_classes: int, seed: int, device: torch.device,
                checkpoints: Path | None, tag: str, learn_scale: bool = False) -> tuple[FeatureClassifier, FitReport]:
    """One training with the chapter's recipe; ``head`` is "soc" or "softmax"."""
    seed_everything(seed)  # the initial weights too
    config = FeatureClassifierConfig(encoder=p["encoder"], width=p["width"], num_classes=num_classes, head=head,
                                     num_features=num_features, learn_scale=learn_scale)
    model = FeatureClassifier(config)
    settings = {"config": vars(config), "n": len(train.labels), **{k: p[k] for k in ("epochs", "lr", "batch_size", "weight_decay")}}
    report = fit_classifier(
        model, train, epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"], seed=seed, device=device, optimiser=p.get("optimiser", "sgd"),
        weight_decay=p["weight_decay"], schedule="onecycle", loss_fn=FeatureClassifier.loss,
        augment=lambda x, g: random_crop_flip(x, 4, g), amp=p["amp"], channels_last=p["channels_last"],
        checkpoint=Checkpoint(checkpoints, f"{tag}-seed{seed}", settings), desc=tag,
    )
    return model, report


def points(model: FeatureClassifier, images: torch.Tensor) -> torch.Tensor:
    """SOC points z of uint8 images, (N, num_features) on the CPU."""
    return predict(nn.Sequential(model.encoder, model.project), images)


def held_out_splits(train: Split, test: Split, held_out: int) -> tuple[Split, Split, Split, Split]:
    """Relabel so the held-out class is the last label; return (train without it, train, test without it, test)."""
    order = [c for c in range(int(train.labels.max()) + 1) if c != held_out] + [held_out]
    train, test = select_classes(train, order), select_classes(test, order)
    k = len(order) - 1
    return take(train, torch.nonzero(train.labels < k).flatten()), train, take(test, torch.nonzero(test.labels < k).flatten()), test


def add_class_to_frozen_model(model: FeatureClassifier, train: Split, test: Split, steps: int, seed: int) -> dict:
    """Paper 2's claim, tested: a new class added to a frozen SOC model by placing only its mean.

    ``train`` and ``test`` hold the old classes ``0..K-1`` and the new class ``K``; the model knows
    the old ones. Two placements: the mean of the new class's points (the maximum-likelihood mean
    of a unit-variance Gaussian), and the mean trained with the SOC loss on all training points
    while everything else stays fixed. Returns test accuracy on the new and on the old classes.
    """
    z_train, z_test = points(model, train.images), points(model, test.images)
    k = int(train.labels.max())
    head = copy.deepcopy(model.head).cpu()
    head.add_class()  # the old means kept, the new one at the origin
    new = test.labels == k
    out = {}

    @torch.no_grad()
    def score(name: str) -> None:
        predicted = head(z_test).argmax(1)
        out[f"{name}, added class"] = float((predicted[new] == k).float().mean())
        out[f"{name}, old classes"] = float((predicted[~new] == test.labels[~new]).float().mean())

    with torch.no_grad():
        head.means.weight[k] = z_train[train.labels == k].mean(0)
    score("mean of its points")
    generator = seed_everything(seed)
    with torch.no_grad():
        head.means.weight[k] = 0
    opt = torch.optim.Adam([head.means.weight], lr=0.1)
    for _ in range(steps):
        batch = torch.randint(len(z_train), (1024,), generator=generator)
        loss = soc_loss(head, z_train[batch], train.labels[batch])
        opt.zero_grad()
        loss.backward()
        head.means.weight.grad[:k] = 0  # only the new class's mean moves (Adam leaves zero-gradient rows where they are)
        opt.step()
    score("trained mean (SOC loss)")
    return out


@torch.no_grad()
def unseen_class_auroc(soc: FeatureClassifier, softmax: FeatureClassifier, test: Split) -> dict:
    """AUROC for telling the unseen class (the last label) from the known ones, by three certainty scores."""
    unseen = (test.labels == int(test.labels.max())).numpy()
    z = points(soc, test.images)
    log_density = soc.head(z.to(next(soc.parameters()).device)).cpu()
    soc_softmax = log_density.softmax(1).max(1).values
    ce_softmax = predict(softmax, test.images).softmax(1).max(1).values
    # a low certainty should flag the unseen class: AUROC of the negated score
    return {
        "SOC: largest class log-density": roc_auc_score(unseen, -log_density.max(1).values.numpy()),
        "SOC: softmax maximum": roc_auc_score(unseen, -soc_softmax.numpy()),
        "cross-entropy: softmax maximum": roc_auc_score(unseen, -ce_softmax.numpy()),
    }


def evaluate(model: FeatureClassifier, test: Split) -> float:
    """Test accuracy."""
    return accuracy(predict(model, test.images), test.labels)
