"""Chapter 3's experiment: the bird / dog / unseen hierarchy, two heads on two backbones, a novel sub-class.

The data (:func:`build_hierarchy`, :func:`make_splits`): Tiny-ImageNet's 4 bird and 6 dog classes
and ``unseen_subclasses`` of its other 49 animals (the "unseen" super-class), one sub-class held out
of training (``novel_subclass``), training sub-classes thinned to an imbalance profile
(:func:`imbalance_counts`), a stratified validation split, and two test sets from Tiny-ImageNet's
validation images: all of them (balanced, so train and test differ in distribution, as in the
paper) and a subset with the training's imbalance. Sub-class labels are the training sub-classes
``0..K-1`` and the novel slot ``K``.

Training (:func:`fit_two_heads`), the paper's two recipes: Adam, batches augmented on the
training device with torchvision's v2 transforms, the validation loss after every epoch; the
ResNet stops early (``patience``) and keeps its best epoch's weights, the ConvNeXt trains a fixed
number of epochs with its learning rate cut when the validation loss stops falling ("I monitored
the loss and adjusted the learning rate if needed") and keeps its last weights. A :class:`Variant`
may train by the other family's recipe and heads: :data:`CONVNEXT_AS_RESNET` is the ConvNeXt trained
exactly as the paper's ResNet, so that the backbone comparison changes the backbone alone.

Evaluation (:func:`evaluate`) scores the held-out test sets and, as the authors' code does, the
training images; :func:`lib.hierarchy.level_metrics` gives the authors' micro-F1 beside macro and weighted F1.

Transfer (:func:`initialise`): ImageNet weights when torchvision can get them; otherwise the
backbone is pretrained here on a source that shares no image and no class with the test set: the
Tiny-ImageNet animals the stand-in does not use (or CIFAR-10, on request).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .data import DataError, Dataset, Split, batches, load_cifar10, locate, network_timeout, select_classes, stratified_split, take
from .data.loaders import tiny_imagenet_classes
from .hierarchy import class_weights, flag_rate, inconsistency, level_metrics, near_miss_share, novelty_auroc, path_accuracy
from .losses import two_level_loss
from .models.hierarchical import FAMILY, HierarchicalConfig, HierarchicalNet
from .settings import ChapterSettings, positive
from .training import Checkpoint, Recipe, autocast, fit_classifier, fit_epochs, seed_everything
from .units import Records, Unit, Work, forward_flops

SUPER = ["bird", "dog", "unseen"]  # the paper's Table 2
IMBALANCE = ("none", "long-tail", "step")
INITIALISATIONS = ("auto", "imagenet", "other-animals", "cifar10", "scratch")


@dataclass(frozen=True)
class StandIn:
    """The stand-in for the paper's Flickr set, built from Tiny-ImageNet's animals; a group of :class:`Settings`' fields."""

    input_size: int
    unseen_subclasses: int
    novel_subclass: str
    hierarchy_seed: int
    imbalance: str
    imbalance_ratio: float
    max_train_per_class: int
    val_fraction: float

    def __post_init__(self):
        positive(input_size=self.input_size, max_train_per_class=self.max_train_per_class, unseen_subclasses=self.unseen_subclasses)
        if not 2 <= self.unseen_subclasses <= 49:
            raise ValueError(f"unseen_subclasses={self.unseen_subclasses} must be between 2 and 49 (Tiny-ImageNet's other animals)")
        if self.max_train_per_class > 500:
            raise ValueError(f"max_train_per_class={self.max_train_per_class} must be at most 500 (Tiny-ImageNet's images per class)")
        if self.imbalance not in IMBALANCE:
            raise ValueError(f"imbalance {self.imbalance!r} is unknown; choose one of {list(IMBALANCE)}")
        if self.imbalance_ratio < 1:
            raise ValueError(f"imbalance_ratio={self.imbalance_ratio} must be at least 1 (largest over smallest sub-class)")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction={self.val_fraction} must lie in (0, 0.5)")
        try:
            names = tiny_imagenet_classes()[0]
        except DataError:  # no copy here: the loader says so before anything trains
            names = None
        if names is not None and self.novel_subclass not in names:
            near = difflib.get_close_matches(self.novel_subclass, names, n=1, cutoff=0.3)
            raise ValueError(f"novel_subclass {self.novel_subclass!r} is not one of Tiny-ImageNet's {len(names)} animal classes"
                             + (f" (did you mean {near[0]!r}?)" if near else f"; e.g. {names[:3]}"))


@dataclass(frozen=True)
class Networks:
    """The two backbone families and the heads on them; a group of :class:`Settings`' fields."""

    resnet_backbone: str
    convnext_backbone: str
    hidden: int
    dropout: float

    def __post_init__(self):
        for name, family in (("resnet_backbone", "ResNet"), ("convnext_backbone", "ConvNeXt")):
            value = getattr(self, name)
            if FAMILY.get(value) != family:
                raise ValueError(f"{name} {value!r} must be a {family}: one of {[k for k, v in FAMILY.items() if v == family]}")
        positive(hidden=self.hidden)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")

    def backbone(self, family: str) -> str:
        return self.resnet_backbone if family == "ResNet" else self.convnext_backbone

    def config(self, family: str, num_sub: int, input_size: int, heads: str = "two", num_super: int = len(SUPER),
               head_family: str = "") -> HierarchicalConfig:
        return HierarchicalConfig(backbone=self.backbone(family), num_super=num_super, num_sub=num_sub, hidden=self.hidden,
                                  dropout=self.dropout, heads=heads, input_size=input_size, head_family=head_family)


@dataclass(frozen=True)
class Pretraining:
    """Where the backbones start (ImageNet weights when torchvision can get them, else pretraining here); a group of
    :class:`Settings`' fields."""

    initialisation: str
    images: int
    epochs: int

    def __post_init__(self):
        if self.initialisation not in INITIALISATIONS:
            raise ValueError(f"initialisation {self.initialisation!r} is unknown; choose one of {list(INITIALISATIONS)}")
        positive(pretrain_images=self.images, pretrain_epochs=self.epochs)


STOPPING = ("early", "fixed")


@dataclass(frozen=True)
class HierarchyRecipe(Recipe):
    """Adam, augmented batches (flip, rotation, colour jitter), the validation loss after every epoch.

    ``stopping="early"`` (the paper's ResNet): stop after ``patience`` epochs without a lower
    validation loss and keep the best epoch's weights. ``"fixed"`` (the paper's ConvNeXt): train all
    ``epochs``, cut the learning rate tenfold after ``patience`` epochs without a lower validation
    loss, keep the last weights.
    """

    stopping: str = "early"
    patience: int = 2  # epochs without a lower validation loss (paper: "early_stopping_patience", not given)
    rotation: float = 15.0  # largest random rotation, degrees
    jitter: float = 0.2  # brightness, contrast and saturation jitter
    augment_groups: int = 8  # each batch is augmented in this many chunks, each with its own random draw
    level_weights: tuple[float, float] = (1.0, 1.0)  # w_super, w_sub of Eq. (5)

    def __post_init__(self):
        super().__post_init__()
        positive(patience=self.patience, augment_groups=self.augment_groups)
        if self.stopping not in STOPPING:
            raise ValueError(f"stopping {self.stopping!r} must be one of {list(STOPPING)}")
        if self.rotation < 0 or not 0 <= self.jitter < 1:
            raise ValueError(f"need rotation >= 0 and 0 <= jitter < 1 (got {self.rotation}, {self.jitter})")
        if len(self.level_weights) != 2 or min(self.level_weights) < 0:
            raise ValueError(f"level_weights {list(self.level_weights)} must be two non-negative numbers [w_super, w_sub] (Eq. 5)")


@dataclass(frozen=True)
class Settings(ChapterSettings):
    """Chapter 3's parameters: its ``parameters`` cell, each value checked here; the defaults are the quick profile."""

    seeds: tuple[int, ...] = (0, 1)  # one run of every model per seed (own data split, own initialisation of the heads)
    resnet_backbone: str = "resnet_mini"  # "resnet50" (paper) or "resnet_mini" (the same family at a CPU's scale)
    convnext_backbone: str = "convnext_mini"  # "convnext_tiny" (ResNet-50's size; the authors' code: convnext_large) or "convnext_mini"
    initialisation: str = "auto"  # "auto": ImageNet weights when torchvision can get them, else "other-animals"; or "imagenet",
    # "other-animals", "cifar10", "scratch"
    pretrain_images: int = 3000  # source images for the pretraining (other animals: 21,500 at most)
    pretrain_epochs: int = 2  # epochs of the pretraining
    input_size: int = 32  # images are resized to this (paper: not given; Tiny-ImageNet's own: 64; ImageNet models: 224)
    unseen_subclasses: int = 6  # sub-classes of the "unseen" super-class, drawn from Tiny-ImageNet's 49 other animals
    novel_subclass: str = "Labrador retriever"  # the sub-class held out of training, in the test set only
    hierarchy_seed: int = 0  # draws the unseen sub-classes and which sub-classes are rare
    imbalance: str = "long-tail"  # "none", "long-tail" (geometric) or "step" (half the sub-classes rare)
    imbalance_ratio: float = 10.0  # training images of the largest sub-class over the smallest
    max_train_per_class: int = 120  # training + validation images of the largest sub-class (Tiny-ImageNet has 500)
    val_fraction: float = 0.15  # share of those held out for early stopping
    resnet_epochs: int = 5  # the ResNet trains at most this many epochs, stopping early (paper: 16 run)
    convnext_epochs: int = 5  # the ConvNeXt trains this many epochs (paper: 20)
    patience: int = 2  # epochs without a lower validation loss before the ResNet stops and the ConvNeXt's rate is cut
    batch_size: int = 64  # images per step (paper: not given)
    lr: float = 0.001  # Adam's learning rate (paper, ConvNeXt: 1e-3; ResNet: not given)
    hidden: int = 128  # the heads' hidden width (paper, ResNet-50: 512)
    dropout: float = 0.5  # the ResNet heads' dropout (paper: rate not given)
    level_weights: tuple[float, float] = (1.0, 1.0)  # w_super, w_sub of Eq. (5)
    rotation: float = 15.0  # largest random rotation, degrees (paper: "random rotations")
    jitter: float = 0.2  # brightness, contrast and saturation jitter (paper: "color jittering")
    augment_groups: int = 8  # each batch is augmented in this many chunks, each with its own random draw
    keep_known: float = 0.95  # novelty threshold: keep this share of the known validation images
    amp: bool = False  # bfloat16 autocast where the device computes it natively (CUDA; a CPU with AVX-512 BF16 or AMX)
    channels_last: bool = True  # NHWC memory layout

    def __post_init__(self):
        super().__post_init__()
        self.data, self.networks, self.pretraining, self.resnet, self.convnext  # their checks
        if not 0.5 <= self.keep_known < 1:
            raise ValueError(f"keep_known={self.keep_known} must lie in [0.5, 1)")

    @property
    def data(self) -> StandIn:
        return StandIn(self.input_size, self.unseen_subclasses, self.novel_subclass, self.hierarchy_seed, self.imbalance, self.imbalance_ratio,
                       self.max_train_per_class, self.val_fraction)

    @property
    def networks(self) -> Networks:
        return Networks(self.resnet_backbone, self.convnext_backbone, self.hidden, self.dropout)

    @property
    def pretraining(self) -> Pretraining:
        return Pretraining(self.initialisation, self.pretrain_images, self.pretrain_epochs)

    def _recipe(self, epochs: int, stopping: str) -> HierarchyRecipe:
        return HierarchyRecipe(epochs=epochs, stopping=stopping, lr=self.lr, batch_size=self.batch_size, optimiser="adam", amp=self.amp,
                               channels_last=self.channels_last, patience=self.patience, rotation=self.rotation, jitter=self.jitter,
                               augment_groups=self.augment_groups, level_weights=tuple(self.level_weights))

    @property
    def resnet(self) -> HierarchyRecipe:
        """The paper's ResNet-50 recipe: early stopping."""
        return self._recipe(self.resnet_epochs, "early")

    @property
    def convnext(self) -> HierarchyRecipe:
        """The paper's ConvNeXt recipe: a fixed number of epochs, the rate cut on a plateau."""
        return self._recipe(self.convnext_epochs, "fixed")

    def recipe(self, family: str) -> HierarchyRecipe:
        return self.resnet if family == "ResNet" else self.convnext

    def config_of(self, variant: "Variant", num_sub: int) -> HierarchicalConfig:
        """The network of ``variant``: its family's backbone, with the heads of the family whose recipe it trains by."""
        return self.networks.config(variant.family, num_sub=num_sub, input_size=self.data.input_size, heads=variant.heads,
                                    head_family=variant.recipe if variant.recipe != variant.family else "")

    def recipe_of(self, variant: "Variant") -> HierarchyRecipe:
        return self.recipe(variant.recipe)


# a 32-px image through the backbone, forward and backward, relative to resnet_mini (measured on 1 CPU thread:
# convnext_mini with its stride-2 stem runs 1.35x resnet_mini's images/s at 32 px, 1.2x at 64 px)
BACKBONE_COST = {"resnet_mini": 1.0, "convnext_mini": 0.8, "resnet50": 40.0, "convnext_tiny": 45.0}


def work(s: Settings) -> float:
    """What the settings ask, in 32-px training images through the mini ResNet (relative units): the
    variants of every seed at their recipe's most epochs (early stopping may end sooner), and the two pretrainings."""
    size = (s.data.input_size / 32) ** 2
    images = s.data.max_train_per_class * (10 + s.data.unseen_subclasses)  # an upper bound: the imbalance keeps fewer
    cost = {f: BACKBONE_COST[s.networks.backbone(f)] * size for f in ("ResNet", "ConvNeXt")}
    variants = sum(cost[v.family] * s.recipe_of(v).epochs for v in VARIANTS)
    pretraining = 0 if s.pretraining.initialisation == "scratch" else s.pretraining.images * s.pretraining.epochs * sum(cost.values())
    return len(s.run.seeds) * images * variants + pretraining


@dataclass(frozen=True)
class Variant:
    """One model of the chapter: a backbone family, its loss, its initialisation and its heads."""

    name: str
    family: str  # "ResNet" or "ConvNeXt"
    weighted: bool  # class-weighted cross-entropy, Eq. (1)-(2); else Eq. (5)
    pretrained: bool  # the run's initialisation; else torchvision's random one
    heads: str = "two"  # "two" (the paper) or "flat" (a sub-class head only)
    recipe: str = ""  # the family whose recipe and heads it trains with ("": its own)

    def __post_init__(self):
        object.__setattr__(self, "recipe", self.recipe or self.family)

    @property
    def tag(self) -> str:
        return re.sub("[^a-z0-9]+", "-", self.name.lower()).strip("-")


RESNET_PAPER = Variant("ResNet, class weights, Eq. (2) (paper)", "ResNet", weighted=True, pretrained=True)
CONVNEXT_PAPER = Variant("ConvNeXt, Eq. (5) (paper)", "ConvNeXt", weighted=False, pretrained=True)
RESNET_NO_WEIGHTS = Variant("ResNet, no class weights", "ResNet", weighted=False, pretrained=True)
# the backbone comparison: the ConvNeXt trained exactly as the paper's ResNet (class weights, Eq. 2, early stopping on
# the validation loss, best-validation weights kept, the ResNet's heads with dropout); only the backbone differs
CONVNEXT_AS_RESNET = Variant("ConvNeXt, the ResNet's recipe and heads", "ConvNeXt", weighted=True, pretrained=True, recipe="ResNet")
RESNET_SCRATCH = Variant("ResNet, from scratch", "ResNet", weighted=True, pretrained=False)
CONVNEXT_SCRATCH = Variant("ConvNeXt, from scratch", "ConvNeXt", weighted=False, pretrained=False)
RESNET_FLAT = Variant("ResNet, flat sub-class classifier", "ResNet", weighted=True, pretrained=True, heads="flat")
VARIANTS = (RESNET_PAPER, CONVNEXT_PAPER, RESNET_NO_WEIGHTS, CONVNEXT_AS_RESNET, RESNET_SCRATCH, CONVNEXT_SCRATCH, RESNET_FLAT)


@dataclass
class Hierarchy:
    sub_names: list[str]  # the training sub-classes, then the novel one (the extra output)
    sub_to_super: torch.Tensor  # super-class index of every sub-class output
    source: list[int]  # the dataset's class index of every sub-class

    @property
    def novel(self) -> int:
        return len(self.sub_names) - 1


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


class Splits(NamedTuple):
    train: Split
    val: Split  # from the training pool, the same mix: early stopping and novelty thresholds
    test: Split  # every validation image of Tiny-ImageNet's for the hierarchy, balanced, the novel sub-class too
    test_as_trained: Split  # a subset of test with the training's imbalance, known sub-classes only (no prior shift)


def make_splits(ds: Dataset, h: Hierarchy, data: StandIn, seed: int) -> Splits:
    """Training, validation and the two test splits with sub-class labels (the novel one only in test),
    at the dataset's own size (the networks resize them, see :class:`lib.models.hierarchical.HierarchicalNet`)."""
    counts = imbalance_counts(h.novel, data.max_train_per_class, data.imbalance, data.imbalance_ratio, data.hierarchy_seed)
    g = torch.Generator().manual_seed(seed)
    rows, labels = [], []
    for k, (c, n) in enumerate(zip(h.source[:-1], counts)):
        members = torch.nonzero(ds.train.labels == c).flatten()
        rows.append(members[torch.randperm(len(members), generator=g)[:n]])
        labels.append(torch.full((n,), k))
    pool = Split(ds.train.images[torch.cat(rows)], torch.cat(labels))
    n_val = max(round(data.val_fraction * len(pool.labels)), 2 * h.novel)
    val_idx, train_idx = stratified_split(pool.labels, [n_val, len(pool.labels) - n_val], seed=seed)
    test_rows = [torch.nonzero(ds.test.labels == c).flatten() for c in h.source]
    test = Split(ds.test.images[torch.cat(test_rows)], torch.cat([torch.full((len(r),), k) for k, r in enumerate(test_rows)]))
    per_class = len(test_rows[0])  # Tiny-ImageNet: 50 validation images per class
    keep = [torch.nonzero(test.labels == k).flatten()[torch.randperm(per_class, generator=g)[: max(1, round(per_class * n / max(counts)))]]
            for k, n in enumerate(counts)]
    return Splits(take(pool, train_idx), take(pool, val_idx), test, take(test, torch.cat(keep).sort().values))


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
        with autocast(device, amp):
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


def fit_two_heads(model: HierarchicalNet, train: Split, val: Split, h: Hierarchy, recipe: HierarchyRecipe, *, weighted: bool, seed: int,
                  device: torch.device, checkpoint: Checkpoint | None, desc: str) -> FitResult:
    """Adam on the two-level loss (Eq. 2 with class weights, else Eq. 5), by the recipe's stopping rule.

    ``"early"``: keeps the weights of the epoch with the lowest validation loss and stops after
    ``patience`` epochs without a new lowest. ``"fixed"``: all epochs, the learning rate cut tenfold
    after ``patience`` epochs without a new lowest, the last weights kept. With a checkpoint, an
    interrupted run resumes after its last saved epoch.
    """
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt)
    sub_w = class_weights(train.labels, len(h.sub_names), novel=h.novel).to(device) if weighted else None
    super_w = class_weights(h.sub_to_super[train.labels], len(SUPER)).to(device) if weighted else None
    levels = (1.0, 1.0) if weighted else tuple(recipe.level_weights)
    to_super = h.sub_to_super.to(device)

    def loss_of(sup, sub, y):
        return two_level_loss(sup, sub.float(), to_super[y], y, super_weights=super_w, sub_weights=sub_w, level_weights=levels)

    opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    augment = augmenter(recipe.rotation, recipe.jitter, recipe.augment_groups)
    images, labels = train.images.to(device), train.labels.to(device)
    generator = seed_everything(seed)
    stateful = {"model": model, "optimiser": opt, "generator": generator}
    early = recipe.stopping == "early"
    if not early:
        # cut after `patience` epochs without a lower validation loss, as the ResNet stops after as many
        # (PyTorch's scheduler counts one more: it cuts after more than its `patience`)
        stateful["plateau"] = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=recipe.patience - 1)
    train_row: dict = {}

    def train_epoch(loop: dict) -> None:
        model.train()
        total, correct_super, correct_sub = torch.zeros((), device=device), torch.zeros((), device=device), torch.zeros((), device=device)
        for x, y in batches(images, labels, batch_size=recipe.batch_size, shuffle=True, generator=generator):
            x = augment(x).contiguous(memory_format=fmt)
            with autocast(device, recipe.amp):
                sup, sub = model(x)
            loss = loss_of(sup if sup is None else sup.float(), sub, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(y)
            correct_sub += (sub.argmax(1) == y).sum()
            correct_super += ((sup.argmax(1) if sup is not None else to_super[sub.argmax(1)]) == to_super[y]).sum()
        n = len(labels)
        train_row.update({"train loss": float(total) / n, "train super-class accuracy": float(correct_super) / n,
                          "train sub-class accuracy": float(correct_sub) / n})

    def end_epoch(loop: dict) -> None:
        """The validation loss, then the recipe's rule: early stopping's best epoch, or the plateau's cut."""
        out = outputs(model, val.images, h, amp=recipe.amp, channels_last=recipe.channels_last)
        with torch.no_grad():
            val_loss = float(loss_of(out["super"].to(device) if model.super_head is not None else None, out["sub"].to(device), val.labels.to(device)))
        row = train_row | {"learning rate": opt.param_groups[0]["lr"], "validation loss": val_loss,
                           "validation super-class accuracy": float((predicted_super(out, h) == h.sub_to_super[val.labels]).float().mean()),
                           "validation sub-class accuracy": float((out["sub"].argmax(1) == val.labels).float().mean())}
        for k, v in row.items():
            loop["history"].setdefault(k, []).append(v)
        if not early:
            stateful["plateau"].step(val_loss)
            loop["best_epoch"] = loop["epoch"]  # the last weights are kept
        elif val_loss <= min(loop["history"]["validation loss"]):
            loop["best"], loop["bad"], loop["best_epoch"] = copy.deepcopy(model.state_dict()), 0, loop["epoch"]
        else:
            loop["bad"] += 1
        loop["history"].setdefault("learning rate after", []).append(opt.param_groups[0]["lr"])  # a cut this epoch shows here

    fresh = {"history": {}, "best_epoch": 0, "bad": 0, "best": copy.deepcopy(model.state_dict()) if early else {}}
    loop, resumed = fit_epochs(recipe.epochs, stateful, fresh, train_epoch, end_epoch=end_epoch, device=device, desc=desc,
                               stop=lambda loop: early and loop["bad"] >= recipe.patience, checkpoint=checkpoint)
    if early:
        model.load_state_dict(loop["best"])
    result = FitResult(loop["history"], loop["best_epoch"], loop["seconds"], resumed=resumed)
    result.images_per_s = len(labels) * len(result.history["train loss"]) / max(result.seconds, 1e-9)
    return result


def imagenet_weights(backbone: str) -> tuple[str | None, str]:
    """torchvision's ImageNet weights for ``backbone`` if they can be had (cached, or downloaded within
    a time limit), else None and why."""
    if backbone.endswith("_mini"):
        return None, f"{backbone} has no ImageNet weights"
    try:
        with network_timeout():
            HierarchicalNet(HierarchicalConfig(backbone=backbone), weights="DEFAULT")
        return "DEFAULT", f"ImageNet weights (torchvision's {backbone} DEFAULT)"
    except (OSError, RuntimeError, EOFError) as err:  # offline or a proxy (URLError and timeouts are OSErrors), a damaged cache
        return None, f"torchvision's ImageNet weights for {backbone} could not be loaded ({type(err).__name__}: {str(err)[:120]})"


def resolve_initialisation(settings: Settings, family: str) -> tuple[str, str | None, str]:
    """What the run's ``initialisation`` becomes for one backbone family, for the plan and the run alike:
    ("imagenet", torchvision's weights argument, why), or ("other-animals" | "cifar10" | "scratch", None,
    why). "auto" takes ImageNet's weights when torchvision can get them (from its cache, or a download
    within a time limit), else the other Tiny-ImageNet animals."""
    how = settings.pretraining.initialisation
    if how not in ("auto", "imagenet"):
        return how, None, f"initialisation={how!r}"
    weights, why = imagenet_weights(settings.networks.backbone(family))
    if weights is not None:
        return "imagenet", weights, why
    if how == "imagenet":
        raise RuntimeError(f"initialisation='imagenet' needs torchvision's weights: {why}. Run online once, or choose 'auto' or 'other-animals'.")
    return "other-animals", None, f"{why}; pretraining on the other Tiny-ImageNet animals instead"


def pretraining_source(how: str, tiny: Dataset, h: Hierarchy) -> tuple[Split, str]:
    """The images a backbone is pretrained on, labelled ``0..C-1``, and what they are.

    ``"other-animals"``: the Tiny-ImageNet animal classes that the stand-in does not use (none of
    its sub-classes, the novel one included); ``"cifar10"``: CIFAR-10's training images.
    """
    if how == "cifar10":
        cifar = load_cifar10()
        return cifar.train, f"CIFAR-10 ({cifar.provenance['format']})"
    other = [c for c in range(len(tiny.classes)) if c not in set(h.source)]
    return select_classes(tiny.train, other), f"the {len(other)} Tiny-ImageNet animal classes the stand-in does not use"


def _pretraining(family: str, how: str, settings: Settings, h: Hierarchy, source_size: int) -> tuple[HierarchicalConfig, Recipe, int]:
    pre, recipe = settings.pretraining, settings.recipe(family)
    classes = 10 if how == "cifar10" else MAX_OTHER_ANIMALS - settings.data.unseen_subclasses  # the Tiny-ImageNet animals not in the hierarchy
    config = settings.networks.config(family, num_sub=classes, input_size=settings.data.input_size, heads="flat")
    pre_recipe = Recipe(epochs=pre.epochs, lr=recipe.lr, batch_size=recipe.batch_size, optimiser="adam", schedule="onecycle",
                        amp=recipe.amp, channels_last=recipe.channels_last, compile=recipe.compile)
    return config, pre_recipe, min(pre.images, source_size)


MAX_OTHER_ANIMALS = 49  # Tiny-ImageNet's animals that are neither birds nor dogs
SOURCE_SIZE = {"cifar10": 50_000, "other-animals": 500}  # training images: all of CIFAR-10, or 500 per Tiny-ImageNet class


def pretrain_unit(settings: Settings, family: str, how: str, h: Hierarchy, data: str) -> Unit:
    source_size = SOURCE_SIZE[how] * (1 if how == "cifar10" else MAX_OTHER_ANIMALS - settings.data.unseen_subclasses)
    config, pre_recipe, n = _pretraining(family, how, settings, h, source_size)
    recipe = settings.recipe(family)
    key = ("pretraining", how, data if how == "other-animals" else "cifar10", config, pre_recipe,
           (recipe.rotation, recipe.jitter, recipe.augment_groups), n, tuple(h.source))
    work = Work(n * pre_recipe.epochs, 0, _flops(config), pre_recipe.epochs * -(-n // pre_recipe.batch_size))
    return Unit(f"pretrain-{how}-{config.backbone}", key, f"{config.backbone} pretrained on {how}", work)


def pretrain(family: str, how: str, settings: Settings, tiny: Dataset, h: Hierarchy, device: torch.device,
             checkpoint: Checkpoint | None) -> tuple[dict, str]:
    """The backbone trained on :func:`pretraining_source` (a stratified subset of ``pretraining.images``)
    as a flat classifier, a source with no image and no class of the test set.

    Returns the backbone's state dict and a description for the run card. Seeded once (0): every
    seed of the chapter starts from the same pretrained backbone, as they would from ImageNet's.
    """
    source, named = pretraining_source(how, tiny, h)
    config, pre_recipe, n = _pretraining(family, how, settings, h, len(source.labels))
    recipe = settings.recipe(family)
    train = take(source, stratified_split(source.labels, [n], seed=0)[0])
    seed_everything(0)
    model = HierarchicalNet(config)
    augment = augmenter(recipe.rotation, recipe.jitter, recipe.augment_groups)
    report = fit_classifier(model, train, pre_recipe, seed=0, device=device, loss_fn=lambda m, x, y: F.cross_entropy(m(x)[1], y),
                            augment=lambda x, g: augment(x), checkpoint=checkpoint, desc=f"pretraining {config.backbone} on {how}")
    what = (f"pretrained here on {named} ({n:,} images, {pre_recipe.epochs} epochs at {settings.data.input_size} px, "
            f"final loss {report.losses[-1]:.2f})")
    return {k: v.cpu() for k, v in model.backbone.state_dict().items()}, what


class Initialisation(NamedTuple):
    how: str  # "imagenet", "other-animals", "cifar10" or "scratch"
    weights: str | None  # torchvision's weights= argument
    state: Callable[[], dict | None]  # the backbone state pretrained here (read when a training needs it), or None
    description: str  # for the run card
    novel_seen: str  # whether the pretraining saw the novel sub-class, and why


def initialise(family: str, settings: Settings, tiny: Dataset, h: Hierarchy, device: torch.device, records: Records) -> Initialisation:
    """The run's initialisation resolved for one backbone family; a pretraining here is a unit
    (:func:`pretrain_unit`) whose backbone is kept beside its record until the trainings need it."""
    novel = h.sub_names[h.novel]
    how, weights, why = resolve_initialisation(settings, family)
    if how == "scratch":
        return Initialisation("scratch", None, lambda: None, "random (torchvision's initialisation), no pretraining", "no pretraining")
    if how == "imagenet":
        return Initialisation("imagenet", weights, lambda: None, why,
                              f"yes: {novel!r}, like every Tiny-ImageNet class, is one of ImageNet-1k's classes, so with ImageNet "
                              "weights no sub-class of the stand-in is new to the backbone")
    if settings.pretraining.initialisation == "auto":
        print(why)
    unit = pretrain_unit(settings, family, how, h, tiny.fingerprint)
    artifact = records.artifact(unit)

    def compute(checkpoint: Checkpoint) -> dict:
        state, what = pretrain(family, how, settings, tiny, h, device, checkpoint)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, artifact)
        return {"description": what}

    description = records.run(unit, compute)["description"]

    def state() -> dict:
        if not artifact.is_file():  # the record came from elsewhere: pretrain again (seeded: the same backbone)
            compute(Checkpoint(None, unit.name))
        return torch.load(artifact, weights_only=True)

    seen = (f"no: {novel!r} is not among the pretraining classes" if how == "other-animals"
            else f"partly: CIFAR-10 has no {novel!r} class, but it has a {SUPER[int(h.sub_to_super[h.novel])]!r} class")
    return Initialisation(how, None, state, description, seen)


def variant_unit(settings: Settings, variant: Variant, h: Hierarchy, data: str, how: str, seed: int, n_train: int) -> Unit:
    """One :class:`Variant` on one seed; ``how`` is the resolved initialisation of its family."""
    recipe = settings.recipe_of(variant)
    config = settings.config_of(variant, len(h.sub_names))
    start = (how, settings.pretraining) if variant.pretrained else ("scratch",)
    key = ("variant", variant, config, recipe, settings.data, tuple(h.source), data, start, settings.keep_known, seed)
    n_val = round(n_train * settings.data.val_fraction / (1 - settings.data.val_fraction))
    work = Work(n_train * recipe.epochs, n_val * recipe.epochs + n_train + 2 * 50 * len(h.sub_names), _flops(config),
                recipe.epochs * -(-n_train // recipe.batch_size))
    return Unit(f"{variant.tag}-seed{seed}", key, f"{variant.name}, seed {seed}", work)


def _flops(config: HierarchicalConfig) -> float:
    return forward_flops(lambda: HierarchicalNet(config), (3, 64, 64), key=config)


def train_variant(variant: Variant, splits: Splits, h: Hierarchy, settings: Settings, init: dict[str, Initialisation], *, seed: int,
                  device: torch.device, checkpoint: Checkpoint | None) -> tuple[HierarchicalNet, FitResult]:
    """One :class:`Variant` on one seed's splits, with its family's recipe; ``init[family]`` is :func:`initialise`'s answer."""
    start = init[variant.family] if variant.pretrained else None
    recipe = settings.recipe_of(variant)
    seed_everything(seed)
    config = settings.config_of(variant, len(h.sub_names))
    model = HierarchicalNet(config, weights=start.weights if start else None)
    state = start.state() if start else None
    if state is not None:
        model.backbone.load_state_dict(state)
    result = fit_two_heads(model, splits.train, splits.val, h, recipe, weighted=variant.weighted, seed=seed, device=device,
                           checkpoint=checkpoint, desc=variant.name)
    return model, result


MAX_PROBABILITY = "1 − largest sub-class probability"  # the two novelty detectors (higher = more novel)
CENTROID_DISTANCE = "distance to the nearest sub-class centroid"


@dataclass
class TestResult:
    """One trained model on the test sets."""

    super: dict  # lib.hierarchy.level_metrics of the super-class, balanced test set
    sub: dict  # ... of the sub-class
    sub_as_trained: dict  # ... of the sub-class on the test set with the training's imbalance (known sub-classes)
    super_train: dict  # ... of the super-class on the training images (unaugmented, eval mode): where the authors' code scores
    sub_train: dict  # ... of the sub-class on the training images
    inconsistency: float  # predicted sub-class under another super-class than the one predicted
    path_accuracy: float  # super-class and sub-class both right
    near_misses: float  # of the wrong sub-classes, the share under the true super-class
    novel_fires: float  # novel images given the novel output
    novel_super_accuracy: float  # novel images given their right super-class
    novel_predicted: list[int]  # what the novel images are called, per sub-class output
    known_super_accuracy: float
    auroc: dict[str, float]  # per detector, novel against known test images
    novel_flagged: dict[str, float]  # per detector, at the threshold that keeps keep_known of the validation images
    known_flagged: dict[str, float]
    scores: dict[str, torch.Tensor]  # per detector, every test image's score
    novel: torch.Tensor  # which test images are of the novel sub-class


def evaluate(model: HierarchicalNet, splits: Splits, h: Hierarchy, recipe: Recipe, keep_known: float) -> TestResult:
    """Per-level metrics on both test sets and on the training images (the authors' code scores those),
    how the levels agree, the novel sub-class's fate, and two novelty detectors.

    Detectors (higher = more novel): one minus the largest sub-class probability over the training
    sub-classes; and the distance of an image's (L2-normalised) backbone features to the nearest
    training sub-class centroid. Each is thresholded to keep ``keep_known`` of the validation
    images (all of known sub-classes), and scored by AUROC on the test set.
    """
    kw = {"amp": recipe.amp, "channels_last": recipe.channels_last}
    out, out_val, out_train = (outputs(model, split.images, h, **kw) for split in (splits.test, splits.val, splits.train))
    true_sub, true_super = splits.test.labels, h.sub_to_super[splits.test.labels]
    pred_sub, pred_super = out["sub"].argmax(1), predicted_super(out, h)
    novel = true_sub == h.novel
    as_trained = outputs(model, splits.test_as_trained.images, h, **kw)["sub"].argmax(1)

    def scores(o):
        known_probs = o["sub"][:, : h.novel].softmax(1)
        f = F.normalize(o["features"], dim=1)
        centroids = torch.stack([F.normalize(out_train["features"], dim=1)[splits.train.labels == k].mean(0) for k in range(h.novel)])
        return {MAX_PROBABILITY: 1 - known_probs.max(1).values, CENTROID_DISTANCE: torch.cdist(f, centroids).min(1).values}

    test_scores, val_scores = scores(out), scores(out_val)
    flagged = {k: flag_rate(val_scores[k], test_scores[k], keep_known)[1] for k in test_scores}
    return TestResult(
        super=level_metrics(true_super, pred_super, len(SUPER)),
        sub=level_metrics(true_sub, pred_sub, len(h.sub_names)),
        sub_as_trained=level_metrics(splits.test_as_trained.labels, as_trained, len(h.sub_names)),
        super_train=level_metrics(h.sub_to_super[splits.train.labels], predicted_super(out_train, h), len(SUPER)),
        sub_train=level_metrics(splits.train.labels, out_train["sub"].argmax(1), len(h.sub_names)),
        inconsistency=inconsistency(pred_super, pred_sub, h.sub_to_super),
        path_accuracy=path_accuracy(true_super, true_sub, pred_super, pred_sub),
        near_misses=near_miss_share(true_sub, pred_sub, h.sub_to_super),
        novel_fires=float((pred_sub[novel] == h.novel).float().mean()),
        novel_super_accuracy=float((pred_super[novel] == true_super[novel]).float().mean()),
        novel_predicted=torch.bincount(pred_sub[novel], minlength=len(h.sub_names)).tolist(),
        known_super_accuracy=float((pred_super[~novel] == true_super[~novel]).float().mean()),
        auroc=novelty_auroc(test_scores, novel),
        novel_flagged={k: float(f[novel].float().mean()) for k, f in flagged.items()},
        known_flagged={k: float(f[~novel].float().mean()) for k, f in flagged.items()},
        scores=test_scores, novel=novel,
    )


def run_seed(ds: Dataset, h: Hierarchy, settings: Settings, init: dict[str, Initialisation], variants: list[Variant], *, seed: int,
             device: torch.device, records: Records) -> dict[Variant, tuple[FitResult, TestResult]]:
    """Every variant on one seed's splits (each a unit, :func:`variant_unit`): its fit (curves, best
    epoch, speed) and its test evaluation."""
    splits = make_splits(ds, h, settings.data, seed)
    out = {}
    for variant in variants:
        how = init[variant.family].how if variant.pretrained else "scratch"
        unit = variant_unit(settings, variant, h, ds.fingerprint, how, seed, len(splits.train.labels))

        def compute(checkpoint: Checkpoint, variant=variant) -> dict:
            model, fit = train_variant(variant, splits, h, settings, init, seed=seed, device=device, checkpoint=checkpoint)
            test = evaluate(model, splits, h, settings.recipe_of(variant), settings.keep_known)
            return {"fit": dataclasses.asdict(fit), "test": dataclasses.asdict(test), "resumed": fit.resumed}

        record = records.run(unit, compute)
        out[variant] = (FitResult(**record["fit"]), TestResult(**record["test"]))
    return out


def plan(settings: Settings, records: Records) -> list[Unit]:
    """Every unit the chapter runs, in its order (Tiny-ImageNet's files must be findable: their fingerprint is part of the keys)."""
    data = locate("tiny-imagenet-animals")
    if data is None:
        raise DataError("Tiny-ImageNet animals are in no data root: the plan needs their files (see data/README.md)")
    classes, supers = tiny_imagenet_classes()
    h = build_hierarchy(Dataset("Tiny-ImageNet animals", None, None, classes, superclasses=supers), settings.data.unseen_subclasses,
                        settings.data.novel_subclass, settings.data.hierarchy_seed)
    counts = imbalance_counts(h.novel, settings.data.max_train_per_class, settings.data.imbalance, settings.data.imbalance_ratio,
                              settings.data.hierarchy_seed)
    n_pool = sum(counts)
    n_train = n_pool - max(round(settings.data.val_fraction * n_pool), 2 * h.novel)
    units, how = [], {}
    for family in ("ResNet", "ConvNeXt"):
        how[family] = resolve_initialisation(settings, family)[0]
        if how[family] in ("other-animals", "cifar10"):
            units.append(pretrain_unit(settings, family, how[family], h, data))
    variants = [v for v in VARIANTS if v.pretrained or settings.pretraining.initialisation != "scratch"]
    units += [variant_unit(settings, v, h, data, how[v.family] if v.pretrained else "scratch", seed, n_train)
              for seed in settings.run.seeds for v in variants]
    return units


def counts_table(h: Hierarchy, splits: Splits) -> list[dict]:
    """Images per sub-class in each split, with its super-class."""
    named = list(zip(("train", "validation", "test", "test, as trained"), splits))
    return [{"sub-class": name, "super-class": SUPER[int(h.sub_to_super[k])], **{split: int((s.labels == k).sum()) for split, s in named}}
            for k, name in enumerate(h.sub_names)]


def super_counts(labels: torch.Tensor, h: Hierarchy) -> np.ndarray:
    return np.bincount(h.sub_to_super[labels].numpy(), minlength=len(SUPER))
