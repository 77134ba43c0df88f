"""Chapter 2's experiment: the feature-dimension sweep, a new class on a frozen model, certainty.

Every training is :func:`lib.training.fit_classifier` with the model's own loss
(:meth:`lib.models.FeatureClassifier.loss`: the SOC loss or cross-entropy), batches augmented on
their device (random crop with 4 pixels of padding, horizontal flip) and a one-cycle learning rate;
both heads get the same recipe. The class means may learn faster than the rest
(``means_lr_scale``), which matters when a run has few steps.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
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
from .models import FeatureClassifier, FeatureClassifierConfig
from .soc import soc_loss
from .training import OPTIMISERS, Checkpoint, FitReport, fit_classifier, predict, seed_everything

DATASETS = {"cifar10": load_cifar10, "cifar100": load_cifar100}
CE = "cross-entropy"  # the name of the baseline in every table


def soc_name(d: int) -> str:
    return f"SOC, {d} features"


def check_parameters(p: dict) -> None:
    """Range checks for chapter 2's parameters; raises ValueError naming the parameter and the fix."""
    for name in ("n_train", "n_test", "epochs", "batch_size", "width", "new_class_steps"):
        if not isinstance(p[name], int) or p[name] < 1:
            raise ValueError(f"{name}={p[name]!r} must be an integer of at least 1")
    if p["n_train"] > 50_000 or p["n_test"] > 10_000:
        raise ValueError(f"n_train={p['n_train']} and n_test={p['n_test']} must be at most CIFAR's 50,000 and 10,000 images")
    if p["n_train"] < 1000 or p["n_test"] < 200:
        raise ValueError(f"n_train={p['n_train']} and n_test={p['n_test']} must be at least 1,000 and 200 (CIFAR-100 needs images of all 100 classes)")
    if not p["cifar10_features"]:
        raise ValueError("cifar10_features is empty; give at least one feature dimension, e.g. [1, 2, 3, 10]")
    for name in ("cifar10_features", "cifar100_features"):
        dims = p[name]
        if any(not isinstance(d, int) or d < 1 for d in dims) or len(set(dims)) != len(dims):
            raise ValueError(f"{name} {dims} must be distinct integers of at least 1")
    if p["ood_features"] not in p["cifar10_features"]:
        raise ValueError(f"ood_features={p['ood_features']} must be one of cifar10_features {p['cifar10_features']}: "
                         "the new-class experiment compares against that 10-class model")
    if not isinstance(p["held_out_class"], int) or not 0 <= p["held_out_class"] < 10:
        raise ValueError(f"held_out_class={p['held_out_class']!r} must be a CIFAR-10 label, 0..9")
    pair = p["pair_classes"]
    if len(pair) != 2 or len(set(pair)) != 2 or any(not isinstance(c, int) or not 0 <= c < 10 for c in pair):
        raise ValueError(f"pair_classes {pair} must be two different CIFAR-10 labels, 0..9")
    if p["lr"] <= 0 or p["weight_decay"] < 0 or p["means_lr_scale"] <= 0:
        raise ValueError(f"lr={p['lr']} and means_lr_scale={p['means_lr_scale']} must be positive, weight_decay={p['weight_decay']} non-negative")
    if p["optimiser"] not in OPTIMISERS:
        raise ValueError(f"optimiser {p['optimiser']!r} is unknown; choose one of {list(OPTIMISERS)}")
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
    keys = ("epochs", "lr", "batch_size", "weight_decay", "optimiser", "means_lr_scale")
    settings = {"config": vars(config), "n": len(train.labels), "labels": train.labels.sum().item(), **{k: p[k] for k in keys}}
    report = fit_classifier(
        model, train, epochs=p["epochs"], lr=p["lr"], batch_size=p["batch_size"], seed=seed, device=device, optimiser=p["optimiser"],
        weight_decay=p["weight_decay"], schedule="onecycle", loss_fn=FeatureClassifier.loss,
        augment=lambda x, g: random_crop_flip(x, 4, g), amp=p["amp"], channels_last=p["channels_last"],
        checkpoint=Checkpoint(checkpoints, f"{tag}-seed{seed}", settings), desc=tag,
        lr_scales={"head.means": p["means_lr_scale"]} if head == "soc" else None,
    )
    return model, report


def points(model: FeatureClassifier, images: torch.Tensor) -> torch.Tensor:
    """SOC points z of uint8 images, (N, num_features) on the CPU."""
    return predict(nn.Sequential(model.encoder, model.project), images)


@dataclass
class SweepRun:
    """One seed of the sweep on one dataset: every model's test accuracy, per class too, and its cost."""

    accuracy: dict[str, float] = field(default_factory=dict)  # CE and soc_name(d)
    per_class: dict[str, list[float]] = field(default_factory=dict)  # accuracy on each class's test images
    seconds: dict[str, float] = field(default_factory=dict)  # training wall time
    images_per_s: dict[str, float] = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    pictures: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # d <= 3: test points z, class means
    resumed: int = 0


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    return [float((predicted[labels == c] == c).float().mean()) for c in range(num_classes)]


def run_sweep(train: Split, test: Split, p: dict, dims: list[int], num_classes: int, *, seed: int, device: torch.device,
              checkpoints: Path | None, tag: str) -> SweepRun:
    """Cross-entropy and the SOC head at every feature dimension in ``dims``, on one seed's data."""
    run = SweepRun()
    for name, head, d in [(CE, "softmax", num_classes), *[(soc_name(d), "soc", d) for d in dims]]:
        model, report = train_model(train, p, head=head, num_features=d, num_classes=num_classes, seed=seed, device=device,
                                    checkpoints=checkpoints, tag=f"{tag}-{'ce' if head == 'softmax' else f'soc{d}'}")
        predicted = predict(model, test.images, amp=p["amp"], channels_last=p["channels_last"]).argmax(1)
        run.accuracy[name] = float((predicted == test.labels).float().mean())
        run.per_class[name] = per_class_accuracy(predicted, test.labels, num_classes)
        run.seconds[name], run.images_per_s[name], run.losses[name] = report.seconds, report.images_per_s, report.losses
        run.resumed += report.resumed
        if head == "soc" and d <= 3:
            run.pictures[d] = (points(model, test.images), model.head.means.weight.detach().cpu().clone())
    return run


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
    while everything else stays fixed. Returns test accuracy on the new and on the old classes,
    and the seconds each placement took (the frozen encoder's pass over the images included).
    """
    started = time.perf_counter()
    z_train = points(model, train.images)
    encode_seconds = time.perf_counter() - started
    z_test = points(model, test.images)
    k = int(train.labels.max())
    head = copy.deepcopy(model.head).cpu()
    head.add_class()  # the old means kept, the new one at the origin
    new = test.labels == k
    out = {}

    @torch.no_grad()
    def score(name: str, seconds: float) -> None:
        predicted = head(z_test).argmax(1)
        out[f"{name}, added class"] = float((predicted[new] == k).float().mean())
        out[f"{name}, old classes"] = float((predicted[~new] == test.labels[~new]).float().mean())
        out[f"{name}, seconds"] = seconds

    started = time.perf_counter()
    with torch.no_grad():
        head.means.weight[k] = z_train[train.labels == k].mean(0)
    score("mean of its points", encode_seconds + time.perf_counter() - started)
    started = time.perf_counter()
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
    score("trained mean (SOC loss)", encode_seconds + time.perf_counter() - started)
    return out


@torch.no_grad()
def certainty_scores(soc: FeatureClassifier, softmax: FeatureClassifier, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Three certainty scores per image (higher = more certain it is a known class)."""
    log_density = soc.head(points(soc, images).to(next(soc.parameters()).device)).cpu()
    return {
        "SOC: largest class log-density": log_density.max(1).values,
        "SOC: softmax maximum": log_density.softmax(1).max(1).values,
        "cross-entropy: softmax maximum": predict(softmax, images).softmax(1).max(1).values,
    }


def unseen_class_auroc(scores: dict[str, torch.Tensor], unseen: torch.Tensor) -> dict[str, float]:
    """AUROC of telling the ``unseen`` images from the known ones by a low certainty score."""
    return {name: float(roc_auc_score(unseen.numpy(), -s.numpy())) for name, s in scores.items()}


def run_beyond(train: Split, test: Split, p: dict, *, seed: int, device: torch.device, checkpoints: Path | None) -> dict:
    """Beyond the paper, one seed: 9-class SOC and cross-entropy models without ``held_out_class``.

    Returns the frozen model's new-class placements (:func:`add_class_to_frozen_model`), the
    9-class models' accuracy on their own classes, the certainty scores of every test image, and
    the AUROC of each score for flagging the class never trained on.
    """
    train9, train10, test9, test10 = held_out_splits(train, test, p["held_out_class"])
    soc9, soc_report = train_model(train9, p, head="soc", num_features=p["ood_features"], num_classes=9, seed=seed, device=device,
                                   checkpoints=checkpoints, tag=f"nine-soc{p['ood_features']}")
    ce9, ce_report = train_model(train9, p, head="softmax", num_features=9, num_classes=9, seed=seed, device=device,
                                 checkpoints=checkpoints, tag="nine-ce")
    out = {
        "SOC, 9 classes": float((predict(soc9, test9.images).argmax(1) == test9.labels).float().mean()),
        "cross-entropy, 9 classes": float((predict(ce9, test9.images).argmax(1) == test9.labels).float().mean()),
        "seconds SOC, 9 classes": soc_report.seconds,
        "resumed": int(soc_report.resumed) + int(ce_report.resumed),
    }
    out |= add_class_to_frozen_model(soc9, train10, test10, p["new_class_steps"], seed)
    unseen = test10.labels == 9
    out["scores"] = certainty_scores(soc9, ce9, test10.images)
    out["unseen"] = unseen
    out["auroc"] = unseen_class_auroc(out["scores"], unseen)
    return out


def run_pair(train: Split, test: Split, p: dict, *, seed: int, device: torch.device, checkpoints: Path | None) -> dict:
    """The paper's first picture: two classes (``pair_classes``) from one feature.

    Trained for five times ``epochs`` on its two classes' images: as many steps as a 10-class model.
    """
    train2, test2 = select_classes(train, p["pair_classes"]), select_classes(test, p["pair_classes"])
    model, _ = train_model(train2, {**p, "epochs": 5 * p["epochs"]}, head="soc", num_features=1, num_classes=2, seed=seed, device=device,
                           checkpoints=checkpoints, tag="pair-soc1")
    z = points(model, test2.images)
    accuracy = float((model.head(z.to(next(model.parameters()).device)).cpu().argmax(1) == test2.labels).float().mean())
    return {"points": z, "labels": test2.labels, "means": model.head.means.weight.detach().cpu().clone(), "accuracy": accuracy}
