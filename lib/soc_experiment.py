"""Chapter 2's experiment: the feature-dimension sweep, a new class on a frozen model, certainty.

Every training is :func:`lib.training.fit_classifier` with the model's own loss
(:meth:`lib.models.FeatureClassifier.loss`: the SOC loss or cross-entropy), batches augmented on
their device (random crop with 4 pixels of padding, horizontal flip) and a one-cycle learning rate;
every head gets the same recipe, with two differences that only SOC's class means have: they may
learn faster than the rest (``means_lr_scale``, which matters when a run has few steps) and weight
decay never applies to them. Beside the sweep of feature dimensions, two optional sweeps on
CIFAR-10: the capacity sweep (cross-entropy, the bottleneck and SOC at one feature dimension, at
other encoder widths) and an arm of SOC models whose means learn at another rate.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import nn

from .data import (
    DataError,
    Dataset,
    Split,
    load_cifar10,
    load_cifar100,
    locate,
    random_crop_flip,
    select_classes,
    stratified_split,
    take,
)
from .models.feature_classifier import FeatureClassifier, FeatureClassifierConfig
from .settings import ChapterSettings, distinct_positive, positive
from .soc import soc_loss
from .training import Checkpoint, FitReport, Recipe, fit_classifier, predict, seed_everything
from .units import Records, Unit, Work, forward_flops

DATASETS = {"cifar10": load_cifar10, "cifar100": load_cifar100}


@dataclass(frozen=True)
class Model:
    """One model of the sweep: a head and its feature dimension (None: one output per class), and,
    for the capacity sweep and the arm, the encoder width and the class means' learning-rate scale
    that differ from the settings' (None: the settings')."""

    head: str  # "softmax" (cross-entropy), "bottleneck" (cross-entropy through d features) or "soc"
    features: int | None = None
    width: int | None = None  # the small encoder's width, when not the settings' (the capacity sweep)
    means_lr_scale: float | None = None  # SOC: the class means' learning-rate scale, when not the recipe's (the arm)

    @property
    def name(self) -> str:
        base = "cross-entropy" if self.head == "softmax" else f"{'SOC' if self.head == 'soc' else 'cross-entropy, bottleneck'}, {self.features} features"
        return base + (f", width {self.width}" if self.width is not None else "") + (
            f", means' lr ×{self.means_lr_scale:g}" if self.means_lr_scale is not None else "")

    @property
    def tag(self) -> str:
        base = {"softmax": "ce", "bottleneck": f"bn{self.features}", "soc": f"soc{self.features}"}[self.head]
        return base + (f"-w{self.width}" if self.width is not None else "") + (f"-lr{self.means_lr_scale:g}" if self.means_lr_scale is not None else "")

    def recipe(self, recipe: "SocRecipe") -> "SocRecipe":
        """The recipe this model trains with: the settings' own, with the arm's means' scale where it has one."""
        return recipe if self.means_lr_scale is None else dataclasses.replace(recipe, means_lr_scale=self.means_lr_scale)


CE = Model("softmax")  # the baseline of every table


def soc(d: int) -> Model:
    return Model("soc", d)


def bottleneck(d: int) -> Model:
    """The control: cross-entropy through a d-dimensional linear bottleneck, SOC's output size without its loss."""
    return Model("bottleneck", d)


def at_width(model: Model, width: int) -> Model:
    """``model`` with another encoder width (the capacity sweep)."""
    return dataclasses.replace(model, width=width)


@dataclass(frozen=True)
class Subsets:
    """Stratified seeded subsets of CIFAR's training and test sets; a group of :class:`Settings`' fields."""

    n_train: int
    n_test: int

    def __post_init__(self):
        positive(n_train=self.n_train, n_test=self.n_test)
        if self.n_train > 50_000 or self.n_test > 10_000:
            raise ValueError(f"n_train={self.n_train} and n_test={self.n_test} must be at most CIFAR's 50,000 and 10,000 images")
        if self.n_train < 1000 or self.n_test < 200:
            raise ValueError(f"n_train={self.n_train} and n_test={self.n_test} must be at least 1,000 and 200 (CIFAR-100 needs images of all 100 classes)")


@dataclass(frozen=True)
class Encoder:
    """The image encoder under every head; a group of :class:`Settings`' fields."""

    name: str
    width: int

    def __post_init__(self):
        FeatureClassifierConfig(encoder=self.name, width=self.width)  # the model's own checks


@dataclass(frozen=True)
class SocRecipe(Recipe):
    """The recipe every head shares (one-cycle, crop and flip), how much faster SOC's class means
    learn, and the label smoothing of the images' cross-entropy (in every head's loss alike)."""

    schedule: str = "onecycle"
    means_lr_scale: float = 1.0  # 1 = the paper's single learning rate
    label_smoothing: float = 0.0  # 0 = the paper's loss

    def __post_init__(self):
        super().__post_init__()
        if not self.means_lr_scale > 0:
            raise ValueError(f"means_lr_scale={self.means_lr_scale} must be positive")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing} must lie in [0, 1)")


@dataclass(frozen=True)
class Sweep:
    """The feature dimensions of the paper's two tables that this run trains; a group of :class:`Settings`' fields."""

    cifar10_features: tuple[int, ...]
    cifar100_features: tuple[int, ...]

    def __post_init__(self):
        if not self.cifar10_features:
            raise ValueError("cifar10_features is empty; give at least one feature dimension, e.g. [1, 2, 3, 10]")
        distinct_positive("cifar10_features", self.cifar10_features)
        distinct_positive("cifar100_features", self.cifar100_features)

    def dims(self, dataset: str) -> tuple[int, ...]:
        return self.cifar10_features if dataset == "cifar10" else self.cifar100_features


@dataclass(frozen=True)
class Capacity:
    """The capacity sweep (cross-entropy, the bottleneck and SOC at ``features`` dimensions, at other
    encoder ``widths``) and the arm (SOC at ``arm_features`` with the means' ``arm_means_lr_scale``);
    a group of :class:`Settings`' fields, both on CIFAR-10 only."""

    widths: tuple[int, ...]
    features: int
    arm_means_lr_scale: float
    arm_features: tuple[int, ...]

    def __post_init__(self):
        distinct_positive("widths", self.widths)
        positive(width_features=self.features)
        distinct_positive("arm_features", self.arm_features)
        if not self.arm_means_lr_scale > 0:
            raise ValueError(f"arm_means_lr_scale={self.arm_means_lr_scale} must be positive")


@dataclass(frozen=True)
class Beyond:
    """The experiments beyond the paper: a class added to a frozen model, certainty, the two-class picture; a group of :class:`Settings`' fields."""

    held_out_class: int
    ood_features: int
    new_class_steps: int
    pair_classes: tuple[int, int]

    def __post_init__(self):
        positive(new_class_steps=self.new_class_steps, ood_features=self.ood_features)
        if not isinstance(self.held_out_class, int) or not 0 <= self.held_out_class < 10:
            raise ValueError(f"held_out_class={self.held_out_class!r} must be a CIFAR-10 label, 0..9")
        pair = self.pair_classes
        if len(pair) != 2 or len(set(pair)) != 2 or any(not isinstance(c, int) or not 0 <= c < 10 for c in pair):
            raise ValueError(f"pair_classes {list(pair)} must be two different CIFAR-10 labels, 0..9")


@dataclass(frozen=True)
class Settings(ChapterSettings):
    """Chapter 2's parameters: its ``parameters`` cell, each value checked here; the defaults are the quick profile."""

    encoder: str = "small"  # "small": the book's 4-layer CNN (CPU-sized); "resnet18": the paper's ResNet-18, CIFAR variant
    width: int = 8  # the small encoder's first width (ignored by resnet18)
    n_train: int = 1400  # training images, a stratified seeded subset (paper: all 50,000)
    n_test: int = 1000  # test images, a stratified seeded subset (paper: all 10,000)
    cifar10_features: tuple[int, ...] = (1, 3, 10)  # feature dimensions on CIFAR-10, for SOC and the bottleneck (paper: 1-30)
    cifar100_features: tuple[int, ...] = (1, 10, 25)  # ... on CIFAR-100 (paper: 1-200); () skips CIFAR-100
    epochs: int = 5  # training epochs of every model (paper: not given)
    batch_size: int = 128  # images per step (paper: not given)
    optimiser: str = "adam"  # "adam", "nadam" or "sgd" (Nesterov momentum 0.9); paper: not given
    lr: float = 0.01  # peak learning rate of the one-cycle schedule
    weight_decay: float = 0.0  # L2 penalty of the optimiser (never on SOC's class means)
    means_lr_scale: float = 10.0  # the class means learn this many times faster than the rest (1: the paper's single rate)
    label_smoothing: float = 0.0  # label smoothing of the images' cross-entropy, in every head's loss alike (0: the paper's loss)
    widths: tuple[int, ...] = (4,)  # the capacity sweep: cross-entropy, the bottleneck and SOC with width_features features also at these encoder widths ([]: none; small encoder only)
    width_features: int = 3  # ... that sweep's feature dimension (one of cifar10_features; 3: the paper's "fraction of the features")
    arm_means_lr_scale: float = 1.0  # an arm: SOC also trained with this means_lr_scale, at arm_features (1: the paper's single rate)
    arm_features: tuple[int, ...] = (3,)  # ... the arm's feature dimensions (each one of cifar10_features; []: no arm)
    held_out_class: int = 7  # beyond the paper: the class left out of training and added later (7: horse)
    ood_features: int = 10  # ... feature dimension of that experiment's SOC model (one of cifar10_features)
    new_class_steps: int = 200  # ... Adam steps that place the new class's mean on the frozen model
    pair_classes: tuple[int, int] = (1, 6)  # the paper's first picture, two classes from one feature (1: automobile, 6: frog)
    amp: bool = False  # bfloat16 autocast where the device computes it natively (CUDA; a CPU with AVX-512 BF16 or AMX)
    channels_last: bool = True  # NHWC memory layout
    torch_compile: bool = False  # torch.compile the training step

    def __post_init__(self):
        super().__post_init__()
        self.subsets, self.encoder_config, self.recipe, self.sweep, self.beyond, self.capacity  # their checks
        if self.ood_features not in self.cifar10_features:
            raise ValueError(f"ood_features={self.ood_features} must be one of cifar10_features {list(self.cifar10_features)}: "
                             "the new-class experiment compares against that 10-class model")
        c = self.capacity
        if c.widths and self.encoder != "small":
            raise ValueError(f"widths {list(c.widths)}: the capacity sweep varies the small encoder's width; {self.encoder!r} has none (use [])")
        if self.width in c.widths:
            raise ValueError(f"widths {list(c.widths)} must not repeat the sweep's own width={self.width}: it is in the sweep already")
        if c.widths and c.features not in self.cifar10_features:
            raise ValueError(f"width_features={c.features} must be one of cifar10_features {list(self.cifar10_features)}: "
                             "the capacity sweep compares with the main sweep's models at that dimension")
        if not set(c.arm_features) <= set(self.cifar10_features):
            raise ValueError(f"arm_features {list(c.arm_features)} must each be one of cifar10_features {list(self.cifar10_features)}: "
                             "the arm is reported beside the main sweep's SOC models")
        if c.arm_features and c.arm_means_lr_scale == self.means_lr_scale:
            raise ValueError(f"arm_means_lr_scale={c.arm_means_lr_scale} equals means_lr_scale: the arm would repeat the sweep's SOC models")

    @property
    def subsets(self) -> Subsets:
        return Subsets(self.n_train, self.n_test)

    @property
    def encoder_config(self) -> Encoder:
        return Encoder(self.encoder, self.width)

    @property
    def recipe(self) -> SocRecipe:
        return SocRecipe(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimiser=self.optimiser, weight_decay=self.weight_decay,
                         amp=self.amp, channels_last=self.channels_last, compile=self.torch_compile, means_lr_scale=self.means_lr_scale,
                         label_smoothing=self.label_smoothing)

    @property
    def sweep(self) -> Sweep:
        return Sweep(tuple(self.cifar10_features), tuple(self.cifar100_features))

    @property
    def beyond(self) -> Beyond:
        return Beyond(self.held_out_class, self.ood_features, self.new_class_steps, tuple(self.pair_classes))

    @property
    def capacity(self) -> Capacity:
        return Capacity(tuple(self.widths), self.width_features, self.arm_means_lr_scale, tuple(self.arm_features))


ENCODER_COST = {"small": 1.0, "resnet18": 40.0}  # training cost of an image, relative to the small encoder of width 16


def work(s: Settings) -> float:
    """What the settings ask, in training images through the small encoder (relative units): every
    model of the sweep on CIFAR-10 (and CIFAR-100 when it has dimensions), the capacity sweep and the
    arm, the two nine-class models and the two-class picture, for every seed."""
    models = 1 + 2 * len(s.sweep.cifar10_features) + (1 + 2 * len(s.sweep.cifar100_features) if s.sweep.cifar100_features else 0) + 2 + 1
    models += len(s.capacity.arm_features)
    e = s.encoder_config

    def per_image(width: int) -> float:
        return ENCODER_COST[e.name] * (width / 16) ** 2 if e.name == "small" else ENCODER_COST[e.name]

    relative = models * per_image(e.width) + sum(3 * per_image(w) for w in s.capacity.widths)
    return len(s.run.seeds) * s.subsets.n_train * s.recipe.epochs * relative


def subsets(dataset: Dataset, sizes: Subsets, seed: int) -> tuple[Split, Split]:
    """Stratified, seeded subsets of the training and test sets (all of them when n is the full size)."""
    def cut(split: Split, n: int) -> Split:
        return split if n >= len(split.labels) else take(split, stratified_split(split.labels, [n], seed=seed)[0])

    return cut(dataset.train, sizes.n_train), cut(dataset.test, sizes.n_test)


def model_config(encoder: Encoder, model: Model, num_classes: int, learn_scale: bool = False) -> FeatureClassifierConfig:
    return FeatureClassifierConfig(encoder=encoder.name, width=model.width or encoder.width, num_classes=num_classes, head=model.head,
                                   num_features=model.features or num_classes, learn_scale=learn_scale)


def train_model(train: Split, encoder: Encoder, recipe: SocRecipe, model: Model, num_classes: int, *, seed: int, device: torch.device,
                checkpoint: Checkpoint | None, desc: str, learn_scale: bool = False, test: Split | None = None) -> tuple[FeatureClassifier, FitReport]:
    """One training with the chapter's recipe (crop-and-flip batches, one-cycle); ``model`` says which head.

    Weight decay never pulls SOC's class means towards the origin: they are the classes, not
    weights of the encoder, and the regulariser of the paper's loss already spreads them. With a
    ``test`` split, its accuracy is measured after every epoch (``FitReport.evaluations``).
    """
    seed_everything(seed)  # the initial weights too
    net = FeatureClassifier(model_config(encoder, model, num_classes, learn_scale))
    is_soc = model.head == "soc"

    def accuracy_on_test(m: FeatureClassifier) -> float:
        return float((predict(m, test.images, amp=recipe.amp, channels_last=recipe.channels_last).argmax(1) == test.labels).float().mean())

    report = fit_classifier(
        net, train, recipe, seed=seed, device=device, loss_fn=lambda m, x, y: FeatureClassifier.loss(m, x, y, recipe.label_smoothing),
        augment=lambda x, g: random_crop_flip(x, 4, g), lr_scales={"head.means": recipe.means_lr_scale} if is_soc else None,
        no_decay=("head.means",) if is_soc else (), evaluate=accuracy_on_test if test is not None else None, checkpoint=checkpoint, desc=desc,
    )
    return net, report


def points(model: FeatureClassifier, images: torch.Tensor) -> torch.Tensor:
    """SOC points z of uint8 images, (N, num_features) on the CPU."""
    return predict(nn.Sequential(model.encoder, model.project), images)


def _flops(config: FeatureClassifierConfig) -> float:
    return forward_flops(lambda: FeatureClassifier(config), (config.in_channels, 32, 32), key=config)


def _steps(n: int, recipe: Recipe) -> int:
    return recipe.epochs * -(-n // recipe.batch_size)


def sweep_unit(s: Settings, dataset: str, data: str, num_classes: int, seed: int, model: Model) -> Unit:
    """One training of the sweep: ``model`` on ``dataset`` (whose files have the fingerprint ``data``), one seed;
    its test accuracy is measured after every epoch (its curve) and once more at the end."""
    config, recipe = model_config(s.encoder_config, model, num_classes), model.recipe(s.recipe)
    n, m = min(s.subsets.n_train, 50_000), min(s.subsets.n_test, 10_000)
    work = Work(train_images=n * recipe.epochs, forward_images=m * (recipe.epochs + 1), flops=_flops(config), steps=_steps(n, recipe))
    return Unit(f"{dataset}-{model.tag}-seed{seed}", ("sweep", dataset, data, s.subsets, config, recipe, seed),
                f"{model.name} on {dataset}, seed {seed}", work)


@dataclass
class SweepRun:
    """One seed of the sweep on one dataset: every model's test accuracy, per class too, and its cost."""

    accuracy: dict[Model, float] = field(default_factory=dict)
    per_class: dict[Model, list[float]] = field(default_factory=dict)  # accuracy on each class's test images
    seconds: dict[Model, float] = field(default_factory=dict)  # training wall time
    images_per_s: dict[Model, float] = field(default_factory=dict)
    losses: dict[Model, list[float]] = field(default_factory=dict)
    curves: dict[Model, list[float]] = field(default_factory=dict)  # every model's test accuracy after every epoch (convergence)
    pictures: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # d <= 3: test points z, class means


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    return [float((predicted[labels == c] == c).float().mean()) for c in range(num_classes)]


def sweep_models(dims: tuple[int, ...]) -> list[Model]:
    """Cross-entropy, then per feature dimension the bottleneck control and the SOC head."""
    return [CE, *[m for d in dims for m in (bottleneck(d), soc(d))]]


def width_models(widths: tuple[int, ...], d: int) -> list[Model]:
    """The capacity sweep: cross-entropy, the bottleneck and SOC with ``d`` features, at every width."""
    return [at_width(m, w) for w in widths for m in (CE, bottleneck(d), soc(d))]


def arm_models(scale: float, dims: tuple[int, ...]) -> list[Model]:
    """The arm: SOC at every dimension of ``dims``, its class means learning at ``scale`` times the rate."""
    return [Model("soc", d, means_lr_scale=scale) for d in dims]


def all_models(s: Settings, dataset: str) -> list[Model]:
    """Every model one seed trains on ``dataset``: the sweep, and on CIFAR-10 the capacity sweep and the arm."""
    models = sweep_models(s.sweep.dims(dataset))
    if dataset == "cifar10":
        c = s.capacity
        models += width_models(c.widths, c.features) + arm_models(c.arm_means_lr_scale, c.arm_features)
    return models


def run_sweep(train: Split, test: Split, s: Settings, dataset: str, data: str, num_classes: int, *, seed: int, device: torch.device,
              records: Records) -> SweepRun:
    """Cross-entropy, and the bottleneck control and the SOC head at every feature dimension of the
    dataset's sweep, and on CIFAR-10 the capacity sweep and the arm (:func:`all_models`), on one
    seed's data (each a unit, see :func:`sweep_unit`); every model's test accuracy is followed epoch
    by epoch."""
    run = SweepRun()
    for model in all_models(s, dataset):
        unit = sweep_unit(s, dataset, data, num_classes, seed, model)

        def compute(checkpoint: Checkpoint, model=model, unit=unit) -> dict:
            net, report = train_model(train, s.encoder_config, model.recipe(s.recipe), model, num_classes, seed=seed, device=device,
                                      checkpoint=checkpoint, desc=unit.name, test=test)
            predicted = predict(net, test.images, amp=s.recipe.amp, channels_last=s.recipe.channels_last).argmax(1)
            record = {"accuracy": float((predicted == test.labels).float().mean()), "per_class": per_class_accuracy(predicted, test.labels, num_classes),
                      "seconds": report.seconds, "images_per_s": report.images_per_s, "losses": report.losses, "curve": report.evaluations,
                      "resumed": report.resumed}
            if model.head == "soc" and model.features <= 3 and model.width is None and model.means_lr_scale is None:
                record |= {"points": points(net, test.images), "means": net.head.means.weight.detach().cpu().clone()}
            return record

        r = records.run(unit, compute)
        run.accuracy[model], run.per_class[model], run.losses[model] = r["accuracy"], r["per_class"], r["losses"]
        run.seconds[model], run.images_per_s[model], run.curves[model] = r["seconds"], r["images_per_s"], r["curve"]
        if "points" in r:
            run.pictures[model.features] = (r["points"], r["means"])
    return run


def held_out_splits(train: Split, test: Split, held_out: int) -> tuple[Split, Split, Split, Split]:
    """Relabel so the held-out class is the last label; return (train without it, train, test without it, test)."""
    order = [c for c in range(int(train.labels.max()) + 1) if c != held_out] + [held_out]
    train, test = select_classes(train, order), select_classes(test, order)
    k = len(order) - 1
    return take(train, torch.nonzero(train.labels < k).flatten()), train, take(test, torch.nonzero(test.labels < k).flatten()), test


MEAN_OF_POINTS = "mean of its points"  # the two ways to place a new class's mean on a frozen model
TRAINED_MEAN = "trained mean (SOC loss)"
NEW_SOFTMAX_ROW = "cross-entropy: a new softmax row"  # the control: a new class added to a frozen cross-entropy model


@dataclass
class Placement:
    """A new class placed on a frozen model: test accuracy on it, on the old classes and on all ten, and the cost."""

    added: float
    old: float
    seconds: float  # the frozen encoder's pass over the training images included
    overall: float  # accuracy over every test image, old classes and new


def _placement(predicted: torch.Tensor, labels: torch.Tensor, k: int, seconds: float) -> Placement:
    """Accuracy on the new class ``k``, on the others and on all, of ``predicted`` labels."""
    new, right = labels == k, predicted == labels
    return Placement(float(right[new].float().mean()), float(right[~new].float().mean()), seconds, float(right.float().mean()))


def _train_new_row(parameter: torch.Tensor, loss_of_batch, n: int, k: int, steps: int, seed: int) -> None:
    """``steps`` Adam steps (lr 0.1, batches of 1024 of the ``n`` training points drawn by ``seed``) on
    ``loss_of_batch(indices)``, moving only row ``k`` of ``parameter``: the one recipe both new-class
    placements share."""
    generator = seed_everything(seed)
    opt = torch.optim.Adam([parameter], lr=0.1)
    for _ in range(steps):
        loss = loss_of_batch(torch.randint(n, (1024,), generator=generator))
        opt.zero_grad()
        loss.backward()
        parameter.grad[:k] = 0  # only the new class's row moves (Adam leaves zero-gradient rows where they are)
        opt.step()


def add_class_to_frozen_model(model: FeatureClassifier, train: Split, test: Split, steps: int, seed: int) -> dict[str, Placement]:
    """Paper 2's claim, tested: a new class added to a frozen SOC model by placing only its mean.

    ``train`` and ``test`` hold the old classes ``0..K-1`` and the new class ``K``; the model knows
    the old ones. Two placements: the mean of the new class's points (the maximum-likelihood mean
    of a unit-variance Gaussian), :data:`MEAN_OF_POINTS`, and the mean trained with the SOC loss on
    all training points while everything else stays fixed, :data:`TRAINED_MEAN`.
    """
    started = time.perf_counter()
    z_train = points(model, train.images)
    encode_seconds = time.perf_counter() - started
    z_test = points(model, test.images)
    k = int(train.labels.max())
    head = copy.deepcopy(model.head).cpu()
    head.add_class()  # the old means kept, the new one at the origin
    out = {}

    @torch.no_grad()
    def score(seconds: float) -> Placement:
        return _placement(head(z_test).argmax(1), test.labels, k, seconds)

    started = time.perf_counter()
    with torch.no_grad():
        head.means.weight[k] = z_train[train.labels == k].mean(0)
    out[MEAN_OF_POINTS] = score(encode_seconds + time.perf_counter() - started)
    started = time.perf_counter()
    with torch.no_grad():
        head.means.weight[k] = 0
    _train_new_row(head.means.weight, lambda b: soc_loss(head, z_train[b], train.labels[b]), len(z_train), k, steps, seed)
    out[TRAINED_MEAN] = score(encode_seconds + time.perf_counter() - started)
    return out


def add_class_to_frozen_softmax(model: FeatureClassifier, train: Split, test: Split, steps: int, seed: int) -> Placement:
    """The control of :func:`add_class_to_frozen_model`: the same new class added to a frozen
    cross-entropy model (``head="softmax"``), by one new row of its softmax layer (weights and bias,
    starting at zero) trained with cross-entropy on all training points while everything else stays
    fixed: the same points, steps, batches, optimiser and seed as SOC's trained mean."""
    if model.config.head != "softmax":
        raise ValueError(f"a new softmax row needs a cross-entropy model (head='softmax'), not head={model.config.head!r}")
    started = time.perf_counter()
    f_train = points(model, train.images)  # the encoder's features: a softmax model's projection is the identity
    encode_seconds = time.perf_counter() - started
    f_test = points(model, test.images)
    k = int(train.labels.max())
    old = torch.cat([model.head.weight.detach().cpu(), model.head.bias.detach().cpu()[:, None]], 1)  # (K, features + 1): weights, bias
    rows = torch.cat([old, torch.zeros(1, old.shape[1])]).requires_grad_()  # (K + 1, features + 1), the new class's row at zero

    def logits(f: torch.Tensor) -> torch.Tensor:
        return f @ rows[:, :-1].T + rows[:, -1]  # (B, K + 1)

    started = time.perf_counter()
    _train_new_row(rows, lambda b: F.cross_entropy(logits(f_train[b]), train.labels[b]), len(f_train), k, steps, seed)
    with torch.no_grad():
        return _placement(logits(f_test).argmax(1), test.labels, k, encode_seconds + time.perf_counter() - started)


# Certainty scores, higher = more certain that an image is of a known class.
LOG_DENSITY = "SOC: largest class log-density"
SOC_SOFTMAX = "SOC: softmax maximum"
CE_SOFTMAX = "cross-entropy: softmax maximum"


@torch.no_grad()
def certainty_scores(soc_model: FeatureClassifier, softmax: FeatureClassifier, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The three certainty scores of every image."""
    log_density = soc_model.head(points(soc_model, images).to(next(soc_model.parameters()).device)).cpu()
    return {
        LOG_DENSITY: log_density.max(1).values,
        SOC_SOFTMAX: log_density.softmax(1).max(1).values,
        CE_SOFTMAX: predict(softmax, images).softmax(1).max(1).values,
    }


def unseen_class_auroc(scores: dict[str, torch.Tensor], unseen: torch.Tensor) -> dict[str, float]:
    """AUROC of telling the ``unseen`` images from the known ones by a low certainty score."""
    return {name: float(roc_auc_score(unseen.numpy(), -s.numpy())) for name, s in scores.items()}


@dataclass
class BeyondRun:
    """One seed of the experiments beyond the paper (nine-class models without the held-out class)."""

    soc9_accuracy: float  # nine-class SOC model, on its own nine classes
    ce9_accuracy: float  # nine-class cross-entropy model, likewise
    placements: dict[str, Placement]  # MEAN_OF_POINTS and TRAINED_MEAN on the SOC model, NEW_SOFTMAX_ROW on the cross-entropy one
    scores: dict[str, torch.Tensor]  # certainty scores of every test image, all ten classes
    unseen: torch.Tensor  # which test images are of the held-out class
    auroc: dict[str, float]  # per score, for flagging the held-out class
    curves: dict[str, list[float]]  # "soc", "ce": the nine-class models' test accuracy (nine classes) after every epoch


def beyond_unit(s: Settings, data: str, seed: int) -> Unit:
    """The nine-class SOC and cross-entropy models of one seed, the class added to the frozen one, the certainty scores."""
    configs = [model_config(s.encoder_config, m, 9) for m in (soc(s.beyond.ood_features), CE)]
    n, m = s.subsets.n_train * 9 // 10, s.subsets.n_test
    work = Work(train_images=2 * n * s.recipe.epochs, forward_images=4 * (n + m) + 2 * m * s.recipe.epochs, flops=_flops(configs[0]),
                steps=2 * _steps(n, s.recipe))
    return Unit(f"cifar10-nine-classes-seed{seed}", ("beyond", data, s.subsets, *configs, s.recipe, s.beyond, seed),
                f"nine-class SOC and cross-entropy, seed {seed}: a class added to the frozen model, certainty", work)


def run_beyond(train: Split, test: Split, s: Settings, data: str, *, seed: int, device: torch.device, records: Records) -> BeyondRun:
    """Beyond the paper, one seed: 9-class SOC and cross-entropy models without ``held_out_class``
    (each followed on the nine classes' test images epoch by epoch), the class added to the frozen
    SOC model (:func:`add_class_to_frozen_model`) and, the control, to the frozen cross-entropy model
    (:func:`add_class_to_frozen_softmax`), and the certainty scores of every test image with their
    AUROC for flagging the class never trained on."""
    unit = beyond_unit(s, data, seed)

    def compute(checkpoint: Checkpoint) -> dict:
        train9, train10, test9, test10 = held_out_splits(train, test, s.beyond.held_out_class)
        soc9, soc_report = train_model(train9, s.encoder_config, s.recipe, soc(s.beyond.ood_features), 9, seed=seed, device=device,
                                       checkpoint=checkpoint.part("soc"), desc=f"{unit.name} SOC", test=test9)
        ce9, ce_report = train_model(train9, s.encoder_config, s.recipe, CE, 9, seed=seed, device=device, checkpoint=checkpoint.part("ce"),
                                     desc=f"{unit.name} cross-entropy", test=test9)
        scores = certainty_scores(soc9, ce9, test10.images)
        unseen = test10.labels == 9
        placements = add_class_to_frozen_model(soc9, train10, test10, s.beyond.new_class_steps, seed)
        placements[NEW_SOFTMAX_ROW] = add_class_to_frozen_softmax(ce9, train10, test10, s.beyond.new_class_steps, seed)
        return {"soc9_accuracy": float((predict(soc9, test9.images).argmax(1) == test9.labels).float().mean()),
                "ce9_accuracy": float((predict(ce9, test9.images).argmax(1) == test9.labels).float().mean()),
                "placements": {k: dataclasses.asdict(v) for k, v in placements.items()}, "scores": scores, "unseen": unseen,
                "auroc": unseen_class_auroc(scores, unseen), "curves": {"soc": soc_report.evaluations, "ce": ce_report.evaluations},
                "resumed": soc_report.resumed or ce_report.resumed}

    r = records.run(unit, compute)
    return BeyondRun(r["soc9_accuracy"], r["ce9_accuracy"], {k: Placement(**v) for k, v in r["placements"].items()}, r["scores"],
                     r["unseen"], r["auroc"], r["curves"])


@dataclass
class Picture:
    """The test images' points of a trained SOC model, their labels and the class means."""

    points: torch.Tensor  # (N, d)
    labels: torch.Tensor  # (N,)
    means: torch.Tensor  # (K, d)
    accuracy: float


def pair_unit(s: Settings, data: str, seed: int) -> Unit:
    config = model_config(s.encoder_config, soc(1), 2)
    n = s.subsets.n_train // 5
    longer = dataclasses.replace(s.recipe, epochs=5 * s.recipe.epochs)
    return Unit(f"cifar10-pair-soc1-seed{seed}", ("pair", data, s.subsets, config, longer, s.beyond.pair_classes, seed),
                f"SOC with one feature on two classes, seed {seed}", Work(n * longer.epochs, 2 * n, _flops(config), _steps(n, longer)))


def run_pair(train: Split, test: Split, s: Settings, data: str, *, seed: int, device: torch.device, records: Records) -> Picture:
    """The paper's first picture: two classes from one feature.

    Trained for five times the recipe's epochs on its two classes' images: as many steps as a 10-class model.
    """
    unit = pair_unit(s, data, seed)

    def compute(checkpoint: Checkpoint) -> dict:
        train2, test2 = select_classes(train, s.beyond.pair_classes), select_classes(test, s.beyond.pair_classes)
        longer = dataclasses.replace(s.recipe, epochs=5 * s.recipe.epochs)
        model, report = train_model(train2, s.encoder_config, longer, soc(1), 2, seed=seed, device=device, checkpoint=checkpoint, desc=unit.name)
        z = points(model, test2.images)
        accuracy = float((model.head(z.to(next(model.parameters()).device)).cpu().argmax(1) == test2.labels).float().mean())
        return {"points": z, "labels": test2.labels, "means": model.head.means.weight.detach().cpu().clone(), "accuracy": accuracy,
                "resumed": report.resumed}

    r = records.run(unit, compute)
    return Picture(r["points"], r["labels"], r["means"], r["accuracy"])


def plan(s: Settings, records: Records) -> list[Unit]:
    """Every unit the chapter runs, in its order (the data must be findable: their fingerprints are part of the keys)."""
    units = []
    for dataset, num_classes in (("cifar10", 10), ("cifar100", 100)):
        data = locate(dataset) if s.sweep.dims(dataset) else None
        if data is not None:
            units += [sweep_unit(s, dataset, data, num_classes, seed, m) for seed in s.run.seeds for m in all_models(s, dataset)]
    data = locate("cifar10")
    if data is None:
        raise DataError("CIFAR-10 is in no data root: the plan needs its files (see data/README.md)")
    units.append(pair_unit(s, data, s.run.seeds[0]))
    units += [beyond_unit(s, data, seed) for seed in s.run.seeds]
    return units
