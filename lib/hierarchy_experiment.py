"""Chapter 3's experiment: the bird / dog / unseen hierarchy, two heads on two backbones, a novel sub-class.

The data (:func:`build_hierarchy`, :func:`make_splits`): Tiny-ImageNet's 4 bird and 6 dog classes
and ``unseen_subclasses`` of its other 49 animals (the "unseen" super-class), one sub-class held out
of training (``novel_subclass``), training sub-classes thinned to an imbalance profile
(:func:`imbalance_counts`), a stratified validation split for early stopping, and Tiny-ImageNet's
balanced validation images as the test set (so train and test differ in distribution, as in the
paper). Sub-class labels are the training sub-classes ``0..K-1`` and the novel slot ``K``.

Training (:func:`fit_two_heads`): Adam, batches augmented on the training device with
torchvision's v2 transforms, the validation loss after every epoch, early stopping with
``patience`` and the best epoch's weights kept; checkpointed after every epoch.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .data import Dataset, Split, batches, load_cifar10, stratified_split, take
from .hierarchy import class_weights, flag_rate, hierarchical_prf, inconsistency, level_metrics, novelty_auroc
from .losses import two_level_loss
from .models.hierarchical import FAMILY, HierarchicalConfig, HierarchicalNet
from .training import Checkpoint, fit_classifier, rng_state, seed_everything, set_rng_state

SUPER = ["bird", "dog", "unseen"]  # the paper's Table 2
IMBALANCE = ("none", "long-tail", "step")
INITIALISATIONS = ("auto", "imagenet", "cifar10", "scratch")


@dataclass
class Hierarchy:
    sub_names: list[str]  # the training sub-classes, then the novel one (the extra output)
    sub_to_super: torch.Tensor  # super-class index of every sub-class output
    source: list[int]  # the dataset's class index of every sub-class

    @property
    def novel(self) -> int:
        return len(self.sub_names) - 1


def check_parameters(p: dict) -> None:
    """Range checks for chapter 3's parameters; raises ValueError naming the parameter and the fix."""
    for name in ("input_size", "max_train_per_class", "epochs", "patience", "batch_size", "hidden", "unseen_subclasses",
                 "pretrain_images", "pretrain_epochs", "augment_groups"):
        if not isinstance(p[name], int) or p[name] < 1:
            raise ValueError(f"{name}={p[name]!r} must be an integer of at least 1")
    if not 2 <= p["unseen_subclasses"] <= 49:
        raise ValueError(f"unseen_subclasses={p['unseen_subclasses']} must be between 2 and 49 (Tiny-ImageNet's other animals)")
    if p["max_train_per_class"] > 500:
        raise ValueError(f"max_train_per_class={p['max_train_per_class']} must be at most 500 (Tiny-ImageNet's images per class)")
    if p["imbalance"] not in IMBALANCE:
        raise ValueError(f"imbalance {p['imbalance']!r} is unknown; choose one of {list(IMBALANCE)}")
    if p["imbalance_ratio"] < 1:
        raise ValueError(f"imbalance_ratio={p['imbalance_ratio']} must be at least 1 (largest over smallest sub-class)")
    if not 0 < p["val_fraction"] < 0.5:
        raise ValueError(f"val_fraction={p['val_fraction']} must lie in (0, 0.5)")
    if p["initialisation"] not in INITIALISATIONS:
        raise ValueError(f"initialisation {p['initialisation']!r} is unknown; choose one of {list(INITIALISATIONS)}")
    if p["lr"] <= 0 or not 0 <= p["dropout"] < 1 or p["rotation"] < 0 or not 0 <= p["jitter"] < 1:
        raise ValueError(f"need lr > 0, 0 <= dropout < 1, rotation >= 0 and 0 <= jitter < 1 (got {p['lr']}, {p['dropout']}, {p['rotation']}, {p['jitter']})")
    if len(p["level_weights"]) != 2 or min(p["level_weights"]) < 0:
        raise ValueError(f"level_weights {p['level_weights']} must be two non-negative numbers [w_super, w_sub] (Eq. 5)")
    if not 0.5 <= p["keep_known"] < 1:
        raise ValueError(f"keep_known={p['keep_known']} must lie in [0.5, 1)")
    for name, family in (("resnet_backbone", "ResNet"), ("convnext_backbone", "ConvNeXt")):
        if FAMILY.get(p[name]) != family:
            raise ValueError(f"{name} {p[name]!r} must be a {family}: one of {[k for k, v in FAMILY.items() if v == family]}")


def build_hierarchy(ds: Dataset, unseen_subclasses: int, novel_subclass: str, seed: int) -> Hierarchy:
    """All bird and dog classes, ``unseen_subclasses`` other animals drawn with ``seed``; the novel one last."""
    if novel_subclass not in ds.classes:
        raise ValueError(f"novel_subclass {novel_subclass!r} is not a Tiny-ImageNet animal class; e.g. {ds.classes[:3]}")
    by_super = {s: [c for c, sup in enumerate(ds.superclasses) if sup == s] for s in ("bird", "dog", "animal")}
    g = torch.Generator().manual_seed(seed)
    others = sorted(by_super["animal"][i] for i in torch.randperm(len(by_super["animal"]), generator=g)[:unseen_subclasses].tolist())
    novel = ds.classes.index(novel_subclass)
    if novel in by_super["animal"] and novel not in others:
        others = sorted(others[:-1] + [novel])  # a novel "unseen" animal takes the last drawn place
    groups = [(0, by_super["bird"]), (1, by_super["dog"]), (2, others)]
    source = [c for _, cs in groups for c in cs if c != novel] + [novel]
    supers = {c: s for s, cs in groups for c in cs}
    return Hierarchy([ds.classes[c] for c in source], torch.tensor([supers[c] for c in source]), source)


def imbalance_counts(n_classes: int, n_max: int, profile: str, ratio: float, seed: int) -> list[int]:
    """Training images per sub-class: ``n_max`` for all ("none"), a geometric long tail from ``n_max``
    down to ``n_max / ratio`` ("long-tail"), or half the classes at ``n_max / ratio`` ("step"); which
    sub-class gets which count is a permutation drawn with ``seed``."""
    if profile == "none":
        counts = [n_max] * n_classes
    elif profile == "long-tail":
        counts = [round(n_max * ratio ** (-i / max(n_classes - 1, 1))) for i in range(n_classes)]
    else:
        counts = [n_max if i < (n_classes + 1) // 2 else round(n_max / ratio) for i in range(n_classes)]
    order = torch.randperm(n_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    return [max(counts[order[i]], 2) for i in range(n_classes)]


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images resized (bilinear, antialiased) to ``size`` x ``size``, still uint8."""
    if images.shape[-1] == size:
        return images
    out = [F.interpolate(b.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
           for b in images.split(2048)]
    return torch.cat(out).round().clamp(0, 255).to(torch.uint8)


def make_splits(ds: Dataset, h: Hierarchy, p: dict, seed: int) -> tuple[Split, Split, Split]:
    """Training, validation and test splits with sub-class labels (the novel one only in test), resized."""
    counts = imbalance_counts(h.novel, p["max_train_per_class"], p["imbalance"], p["imbalance_ratio"], p["hierarchy_seed"])
    g = torch.Generator().manual_seed(seed)
    rows, labels = [], []
    for k, (c, n) in enumerate(zip(h.source[:-1], counts)):
        members = torch.nonzero(ds.train.labels == c).flatten()
        rows.append(members[torch.randperm(len(members), generator=g)[:n]])
        labels.append(torch.full((n,), k))
    pool = Split(ds.train.images[torch.cat(rows)], torch.cat(labels))
    n_val = max(round(p["val_fraction"] * len(pool.labels)), 2 * h.novel)
    val_idx, train_idx = stratified_split(pool.labels, [n_val, len(pool.labels) - n_val], seed=seed)
    test_rows = [torch.nonzero(ds.test.labels == c).flatten() for c in h.source]
    test = Split(ds.test.images[torch.cat(test_rows)], torch.cat([torch.full((len(r),), k) for k, r in enumerate(test_rows)]))
    size = p["input_size"]
    return (Split(resize(pool.images[train_idx], size), pool.labels[train_idx]), Split(resize(pool.images[val_idx], size), pool.labels[val_idx]),
            Split(resize(test.images, size), test.labels))


def augmenter(rotation: float, jitter: float, groups: int):
    """Flip, rotation and colour jitter with torchvision's v2 transforms, on whole batches on their device.

    A v2 transform draws one set of random parameters per call, so a batch is cut into ``groups``
    chunks, each transformed with its own draw (from the global torch generator, which the
    training seeds and checkpoints).
    """
    from torchvision.transforms import v2

    transform = v2.Compose([v2.RandomHorizontalFlip(), v2.RandomRotation(rotation), v2.ColorJitter(jitter, jitter, jitter)])
    return lambda x: torch.cat([transform(chunk) for chunk in x.chunk(groups)])


@dataclass
class FitResult:
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch: losses and accuracies, train and validation
    best_epoch: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    resumed: bool = False


@torch.no_grad()
def outputs(model: HierarchicalNet, images: torch.Tensor, h: Hierarchy, *, batch_size: int = 256, amp: bool = False,
            channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Super- and sub-class logits and backbone features of uint8 images, on the CPU.

    A flat model has no super-class logits: its "super" is the log of its sub-class probabilities
    summed per super-class, and its predicted super-class is read off its predicted sub-class
    (:func:`predicted_super`).
    """
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    parts = {"super": [], "sub": [], "features": []}
    for (x,) in batches(images, batch_size=batch_size, shuffle=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            features = model.forward_features(x.to(device).contiguous(memory_format=fmt))
            sup, sub = model.forward_head(features)
        if sup is None:
            probs = sub.float().softmax(1)
            sup = torch.zeros(len(sub), len(SUPER), device=device).index_add_(1, h.sub_to_super.to(device), probs).clamp_min(1e-12).log()
        for k, v in (("super", sup), ("sub", sub), ("features", features)):
            parts[k].append(v.float().cpu())
    return {k: torch.cat(v) for k, v in parts.items()} | {"flat": model.super_head is None}


def predicted_super(out: dict, h: Hierarchy) -> torch.Tensor:
    """The super-class head's answer, or for a flat model the super-class of its predicted sub-class."""
    return h.sub_to_super[out["sub"].argmax(1)] if out["flat"] else out["super"].argmax(1)


def fit_two_heads(model: HierarchicalNet, train: Split, val: Split, h: Hierarchy, p: dict, *, weighted: bool, seed: int,
                  device: torch.device, checkpoint: Checkpoint, desc: str) -> FitResult:
    """Adam on the two-level loss (Eq. 2 with class weights, else Eq. 5), early stopping on the validation loss.

    Keeps the weights of the epoch with the lowest validation loss and stops after ``patience``
    epochs without a new lowest; with a checkpoint, an interrupted run resumes after its last epoch.
    """
    fmt = torch.channels_last if p["channels_last"] else torch.contiguous_format
    model.to(device, memory_format=fmt)
    sub_w = class_weights(train.labels, len(h.sub_names), novel=h.novel).to(device) if weighted else None
    super_w = class_weights(h.sub_to_super[train.labels], len(SUPER)).to(device) if weighted else None
    levels = (1.0, 1.0) if weighted else tuple(p["level_weights"])
    to_super = h.sub_to_super.to(device)

    def loss_of(sup, sub, y):
        return two_level_loss(sup, sub.float(), to_super[y], y, super_weights=super_w, sub_weights=sub_w, level_weights=levels)

    opt = torch.optim.Adam(model.parameters(), lr=p["lr"])
    augment = augmenter(p["rotation"], p["jitter"], p["augment_groups"])
    images, labels = train.images.to(device), train.labels.to(device)
    result, best_state, bad = FitResult(), copy.deepcopy(model.state_dict()), 0
    generator = seed_everything(seed)
    state = checkpoint.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimiser"])
        generator.set_state(state["generator"])
        set_rng_state(state["rng"])
        best_state, bad, result = state["best"], state["bad"], state["result"]
        result.resumed = True
    use_amp = p["amp"] and device.type == "cuda"
    epoch = len(result.history.get("train loss", []))
    progress = tqdm(total=p["epochs"], initial=epoch, desc=desc, leave=False)
    while epoch < p["epochs"] and bad < p["patience"]:
        started = time.perf_counter()
        model.train()
        total, correct_super, correct_sub = torch.zeros((), device=device), torch.zeros((), device=device), torch.zeros((), device=device)
        for x, y in batches(images, labels, batch_size=p["batch_size"], shuffle=True, generator=generator):
            x = augment(x).contiguous(memory_format=fmt)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                sup, sub = model(x)
            loss = loss_of(sup if sup is None else sup.float(), sub, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(y)
            correct_sub += (sub.argmax(1) == y).sum()
            correct_super += ((sup.argmax(1) if sup is not None else to_super[sub.argmax(1)]) == to_super[y]).sum()
        n = len(labels)
        train_row = {"train loss": float(total) / n, "train super-class accuracy": float(correct_super) / n, "train sub-class accuracy": float(correct_sub) / n}
        result.seconds += time.perf_counter() - started
        out = outputs(model, val.images, h, amp=p["amp"], channels_last=p["channels_last"])
        with torch.no_grad():
            val_loss = float(loss_of(out["super"].to(device) if model.super_head is not None else None, out["sub"].to(device), val.labels.to(device)))
        row = train_row | {"validation loss": val_loss,
                           "validation super-class accuracy": float((predicted_super(out, h) == h.sub_to_super[val.labels]).float().mean()),
                           "validation sub-class accuracy": float((out["sub"].argmax(1) == val.labels).float().mean())}
        for k, v in row.items():
            result.history.setdefault(k, []).append(v)
        epoch += 1
        if val_loss <= min(result.history["validation loss"]):
            best_state, bad, result.best_epoch = copy.deepcopy(model.state_dict()), 0, epoch
        else:
            bad += 1
        checkpoint.save({"model": model.state_dict(), "optimiser": opt.state_dict(), "generator": generator.get_state(),
                         "rng": rng_state(), "best": best_state, "bad": bad, "result": result})
        progress.update(1)
    progress.close()
    model.load_state_dict(best_state)
    result.images_per_s = len(labels) * len(result.history["train loss"]) / max(result.seconds, 1e-9)
    return result


def imagenet_weights(backbone: str) -> tuple[str | None, str]:
    """torchvision's ImageNet weights for ``backbone`` if they can be had (cached or downloaded), else None and why."""
    if backbone.endswith("_mini"):
        return None, f"{backbone} has no ImageNet weights"
    try:
        HierarchicalNet(HierarchicalConfig(backbone=backbone), weights="DEFAULT")
        return "DEFAULT", f"ImageNet weights (torchvision's {backbone} DEFAULT)"
    except Exception as err:  # offline, a proxy, a damaged cache
        return None, f"torchvision's ImageNet weights for {backbone} could not be loaded ({type(err).__name__}: {str(err)[:120]})"


def pretrain_on_cifar10(backbone: str, p: dict, device: torch.device, checkpoints: Path | None) -> tuple[dict, str]:
    """The backbone trained on CIFAR-10 (a seeded subset of ``pretrain_images``), a source with no image of the test set.

    Returns the backbone's state dict and a description for the run card. Seeded once (0): every
    seed of the chapter starts from the same pretrained backbone, as they would from ImageNet's.
    """
    cifar = load_cifar10()
    n = min(p["pretrain_images"], len(cifar.train.labels))
    idx = stratified_split(cifar.train.labels, [n], seed=0)[0]
    train = Split(resize(cifar.train.images[idx], p["input_size"]), cifar.train.labels[idx])
    seed_everything(0)
    model = HierarchicalNet(HierarchicalConfig(backbone=backbone, num_sub=10, hidden=p["hidden"], dropout=p["dropout"], heads="flat"))
    augment = augmenter(p["rotation"], p["jitter"], p["augment_groups"])
    report = fit_classifier(
        model, train, epochs=p["pretrain_epochs"], lr=p["lr"], batch_size=p["batch_size"], seed=0, device=device, optimiser="adam",
        schedule="onecycle", loss_fn=lambda m, x, y: F.cross_entropy(m(x)[1], y), augment=lambda x, g: augment(x),
        amp=p["amp"], channels_last=p["channels_last"],
        checkpoint=Checkpoint(checkpoints, f"pretrain-{backbone}", {"n": n, "size": p["input_size"], "epochs": p["pretrain_epochs"],
                                                                  "lr": p["lr"], "hidden": p["hidden"]}), desc=f"pretraining {backbone} on CIFAR-10")
    what = (f"pretrained here on CIFAR-10 ({cifar.provenance['format']}; {n:,} images, {p['pretrain_epochs']} epochs at "
            f"{p['input_size']} px, final loss {report.losses[-1]:.2f})")
    return {k: v.cpu() for k, v in model.backbone.state_dict().items()}, what


def initialise(backbone: str, p: dict, device: torch.device, checkpoints: Path | None) -> tuple[str | None, dict | None, str]:
    """The chapter's ``initialisation`` resolved for one backbone: (weights=, a backbone state, description)."""
    how = p["initialisation"]
    if how == "scratch":
        return None, None, "random (torchvision's initialisation), no pretraining"
    if how in ("auto", "imagenet"):
        weights, why = imagenet_weights(backbone)
        if weights is not None:
            return weights, None, why
        if how == "imagenet":
            raise RuntimeError(f"initialisation='imagenet' needs torchvision's weights: {why}. Run online once, or choose 'auto' or 'cifar10'.")
        print(f"{why}; pretraining on CIFAR-10 instead")
    state, what = pretrain_on_cifar10(backbone, p, device, checkpoints)
    return None, state, what


VARIANTS = {  # name: (family, class weights, pretrained, heads)
    "ResNet, class weights, Eq. (2) (paper)": ("ResNet", True, True, "two"),
    "ConvNeXt, Eq. (5) (paper)": ("ConvNeXt", False, True, "two"),
    "ResNet, no class weights": ("ResNet", False, True, "two"),
    "ConvNeXt, class weights": ("ConvNeXt", True, True, "two"),
    "ResNet, from scratch": ("ResNet", True, False, "two"),
    "ConvNeXt, from scratch": ("ConvNeXt", False, False, "two"),
    "ResNet, flat sub-class classifier": ("ResNet", True, True, "flat"),
}


def train_variant(name: str, splits: tuple[Split, Split, Split], h: Hierarchy, p: dict, init: dict, *, seed: int,
                  device: torch.device, checkpoints: Path | None) -> tuple[HierarchicalNet, FitResult]:
    """One of :data:`VARIANTS` on one seed's splits; ``init[family]`` is :func:`initialise`'s answer."""
    family, weighted, pretrained, heads = VARIANTS[name]
    backbone = p["resnet_backbone"] if family == "ResNet" else p["convnext_backbone"]
    weights, state, _ = init[family] if pretrained else (None, None, "scratch")
    seed_everything(seed)
    config = HierarchicalConfig(backbone=backbone, num_super=len(SUPER), num_sub=len(h.sub_names), hidden=p["hidden"], dropout=p["dropout"], heads=heads)
    model = HierarchicalNet(config, weights=weights)
    if state is not None:
        model.backbone.load_state_dict(state)
    keys = ("epochs", "patience", "lr", "batch_size", "rotation", "jitter", "augment_groups", "level_weights", "initialisation")
    settings = {"variant": name, "config": vars(config), "n": len(splits[0].labels), "labels": int(splits[0].labels.sum()), **{k: p[k] for k in keys}}
    result = fit_two_heads(model, splits[0], splits[1], h, p, weighted=weighted, seed=seed, device=device,
                           checkpoint=Checkpoint(checkpoints, f"{re.sub('[^a-z0-9]+', '-', name.lower()).strip('-')}-seed{seed}", settings), desc=name)
    return model, result


def evaluate(model: HierarchicalNet, splits: tuple[Split, Split, Split], h: Hierarchy, p: dict) -> dict:
    """Per-level and hierarchical metrics on the test set, the novel sub-class's fate, and two novelty detectors.

    Detectors (higher = more novel): one minus the largest sub-class probability over the training
    sub-classes; and the distance of an image's (L2-normalised) backbone features to the nearest
    training sub-class centroid. Each is thresholded to keep ``keep_known`` of the validation
    images (all of known sub-classes), and scored by AUROC on the test set.
    """
    train, val, test = splits
    kw = {"amp": p["amp"], "channels_last": p["channels_last"]}
    out, out_val, out_train = outputs(model, test.images, h, **kw), outputs(model, val.images, h, **kw), outputs(model, train.images, h, **kw)
    true_sub, true_super = test.labels, h.sub_to_super[test.labels]
    pred_sub, pred_super = out["sub"].argmax(1), predicted_super(out, h)
    novel = true_sub == h.novel
    r = {"super": level_metrics(true_super, pred_super, len(SUPER)), "sub": level_metrics(true_sub, pred_sub, len(h.sub_names))}
    r["inconsistency"] = inconsistency(pred_super, pred_sub, h.sub_to_super)
    r |= hierarchical_prf(true_super, true_sub, pred_super, pred_sub, SUPER, h.sub_names)
    r["novel predicted as the novel slot"] = float((pred_sub[novel] == h.novel).float().mean())
    r["novel: super-class accuracy"] = float((pred_super[novel] == true_super[novel]).float().mean())
    r["novel: predicted sub-classes"] = torch.bincount(pred_sub[novel], minlength=len(h.sub_names)).tolist()
    r["known: super-class accuracy"] = float((pred_super[~novel] == true_super[~novel]).float().mean())

    def scores(o):
        known_probs = o["sub"][:, : h.novel].softmax(1)
        f = F.normalize(o["features"], dim=1)
        centroids = torch.stack([F.normalize(out_train["features"], dim=1)[train.labels == k].mean(0) for k in range(h.novel)])
        return {"1 - largest sub-class probability": 1 - known_probs.max(1).values, "distance to the nearest sub-class centroid": torch.cdist(f, centroids).min(1).values}

    test_scores, val_scores = scores(out), scores(out_val)
    r["novelty AUROC"] = novelty_auroc(test_scores, novel)
    r["novel flagged"], r["known flagged"] = {}, {}
    for k in test_scores:
        _, flagged = flag_rate(val_scores[k], test_scores[k], p["keep_known"])
        r["novel flagged"][k], r["known flagged"][k] = float(flagged[novel].float().mean()), float(flagged[~novel].float().mean())
    r["scores"] = {k: v for k, v in test_scores.items()}
    r["novel mask"] = novel
    return r


def run_seed(ds: Dataset, h: Hierarchy, p: dict, init: dict, variants: list[str], *, seed: int, device: torch.device,
             checkpoints: Path | None) -> dict:
    """Every variant on one seed's splits: its fit (curves, best epoch, speed) and its test evaluation."""
    splits = make_splits(ds, h, p, seed)
    out = {}
    for name in variants:
        model, fit = train_variant(name, splits, h, p, init, seed=seed, device=device, checkpoints=checkpoints)
        out[name] = {"fit": fit, "test": evaluate(model, splits, h, p)}
    return out


def counts_table(ds: Dataset, h: Hierarchy, splits: tuple[Split, Split, Split]) -> list[dict]:
    """Images per sub-class in each split, with its super-class."""
    return [{"sub-class": name, "super-class": SUPER[int(h.sub_to_super[k])], **{split: int((s.labels == k).sum()) for split, s in zip(("train", "validation", "test"), splits)}}
            for k, name in enumerate(h.sub_names)]


def super_counts(labels: torch.Tensor, h: Hierarchy) -> np.ndarray:
    return np.bincount(h.sub_to_super[labels].numpy(), minlength=len(SUPER))
