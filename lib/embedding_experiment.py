"""Chapter 1's experiment: a straight classifier, its embeddings, a 4th class, and the clock.

One call of :func:`run_extension` is the paper's whole procedure for one dataset and one seed:

1. train the straight classifier (Fig. 3) on the ``classes``;
2. freeze its trunk and train the 64-d embedding head with triplets (Fig. 4), then the classic
   classifiers on the embeddings (Table 2, "3-class model");
3. add ``added_class``: train the head further on all four classes, re-embed, retrain the
   classic classifiers (Table 2, "4-class model");

and, for the time comparison of Eqs. (6)-(7), a new 4-class straight classifier from scratch;
and two controls for the extension, trained on the same cached trunk features: a new 4-output
softmax head on the frozen trunk (the cheap conventional extension) and kNN on the trunk's own
features (no triplet-trained layer). Every step's time is measured. Labels: the starting classes
are ``0..K-1`` in the order given, the added class is ``K``.

A *case* (:class:`Case`) is one class choice on one dataset: MNIST's ``classes`` and
``added_class``, and each of Fashion-MNIST's ``fashion_classes`` with its ``fashion_added``.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from .data import (
    DataError,
    Dataset,
    Split,
    load_fashion_mnist,
    load_mnist,
    locate,
    per_class_subset,
    select_classes,
    take,
    to_unit,
)
from .evaluation import accuracy
from .metric_learning import HeadReport, HeadSchedule, embed, fit_embedding_head, fit_softmax_head
from .models.pyramid import EmbeddingNet, PyramidConfig, StraightClassifier
from .settings import ChapterSettings, positive
from .similarity_search import VectorIndex, precision_at_k
from .training import SCHEDULES, Checkpoint, Recipe, autocast, clock, fit_classifier, predict, seed_everything
from .units import Records, Unit, Work, forward_flops

DATASETS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
NUM_CLASSES = 10


def check_classes(classes, added_class: int) -> None:
    """The starting classes and the added one: distinct labels 0..9, at least two to start with."""
    classes = list(classes)
    if len(classes) < 2:
        raise ValueError(f"classes {classes} must name at least 2 classes (the paper uses 3)")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes} repeat a class; give each class once")
    bad = [c for c in [*classes, added_class] if not (isinstance(c, int) and 0 <= c < NUM_CLASSES)]
    if bad:
        raise ValueError(f"classes {bad} are unknown: MNIST and Fashion-MNIST have the labels 0..{NUM_CLASSES - 1}")
    if added_class in classes:
        raise ValueError(f"added_class={added_class} is already among classes {classes}; choose a class the first model has not seen")


@dataclass(frozen=True)
class Case:
    """One class choice on one dataset: ``name`` keys its runs and claims (the dataset's name for its
    first choice, e.g. ``fashion-mnist``; the dataset and the starting classes for the others, e.g.
    ``fashion-mnist-012``)."""

    name: str
    dataset: str
    classes: tuple[int, ...]
    added_class: int


@dataclass(frozen=True)
class Task:
    """Which datasets and classes, and how many of their images; a group of :class:`Settings`' fields."""

    datasets: tuple[str, ...]
    classes: tuple[int, ...]  # MNIST's starting classes
    added_class: int  # ... and its added class
    train_per_class: int
    test_per_class: int
    fashion_classes: tuple[tuple[int, ...], ...] = ((1, 5, 8),)  # Fashion-MNIST's starting classes, one case each
    fashion_added: tuple[int, ...] = (9,)  # the class added to each

    def __post_init__(self):
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown or not self.datasets or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets {list(self.datasets)} must be distinct names among {sorted(DATASETS)}")
        check_classes(self.classes, self.added_class)
        if not self.fashion_classes or len(self.fashion_classes) != len(self.fashion_added):
            raise ValueError(f"fashion_classes {[list(c) for c in self.fashion_classes]} and fashion_added {list(self.fashion_added)} "
                             "must be lists of the same length, at least 1: one added class for each choice of starting classes")
        for classes, added in zip(self.fashion_classes, self.fashion_added):
            check_classes(classes, added)
        names = [c.name for c in self.cases]
        if len(set(names)) != len(names):
            raise ValueError(f"fashion_classes {[list(c) for c in self.fashion_classes]} repeat a choice of starting classes")
        positive(train_per_class=self.train_per_class, test_per_class=self.test_per_class)

    @property
    def cases(self) -> tuple[Case, ...]:
        """Every dataset's class choices, in the order of ``datasets``, the first choice of each first."""
        out = []
        for dataset in self.datasets:
            choices = zip(self.fashion_classes, self.fashion_added) if dataset == "fashion-mnist" else [(self.classes, self.added_class)]
            for i, (classes, added) in enumerate(choices):
                name = dataset if i == 0 else f"{dataset}-{''.join(str(c) for c in classes)}"
                out.append(Case(name, dataset, tuple(classes), added))
        return tuple(out)

    def case(self, name: str) -> Case:
        return next(c for c in self.cases if c.name == name)


@dataclass(frozen=True)
class Pyramid:
    """Figs. 3 and 4: the backbone, its feature pyramid and the dense layers on it; a group of :class:`Settings`' fields."""

    backbone: str
    input_size: int
    fpn_channels: int
    hidden: int
    embedding_dim: int

    def __post_init__(self):
        positive(embedding_dim=self.embedding_dim)
        if not isinstance(self.input_size, int) or self.input_size < 28:
            raise ValueError(f"input_size={self.input_size} must be at least the images' 28 pixels (the paper resizes to 128)")
        self.config(2)  # the network's own checks (backbone name, sizes)

    def config(self, num_classes: int) -> PyramidConfig:
        return PyramidConfig(backbone=self.backbone, in_channels=1, image_size=28, input_size=self.input_size,
                             fpn_channels=self.fpn_channels, hidden=self.hidden, num_classes=num_classes)


@dataclass(frozen=True)
class Straight:
    """Step 1's recipe: NAdam and cross-entropy, the paper's epochs per dataset; a group of :class:`Settings`' fields."""

    mnist_epochs: int
    fashion_epochs: int
    lr: float
    batch_size: int
    amp: bool
    channels_last: bool
    schedule: str

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"straight_schedule={self.schedule!r} is unknown; choose one of {list(SCHEDULES)}")
        self.recipe("mnist"), self.recipe("fashion-mnist")  # the recipe's own checks

    def recipe(self, dataset: str) -> Recipe:
        epochs = self.mnist_epochs if dataset == "mnist" else self.fashion_epochs
        return Recipe(epochs=epochs, lr=self.lr, batch_size=self.batch_size, optimiser="nadam", schedule=self.schedule, amp=self.amp,
                      channels_last=self.channels_last)


@dataclass(frozen=True)
class Evaluation:
    """How the embeddings are used and shown; a group of :class:`Settings`' fields."""

    knn_k: int
    search_k: int
    tsne_points: int

    def __post_init__(self):
        positive(knn_k=self.knn_k, search_k=self.search_k)
        if self.tsne_points < 0:
            raise ValueError(f"tsne_points={self.tsne_points} must be 0 (no projection) or more")


@dataclass(frozen=True)
class Settings(ChapterSettings):
    """Chapter 1's parameters: its ``parameters`` cell, each value checked here; the defaults are the quick profile."""

    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")  # paper: both
    classes: tuple[int, ...] = (0, 1, 2)  # MNIST's starting classes (paper: 3 classes, not named)
    added_class: int = 3  # MNIST's class added later (paper: "a 4th class")
    fashion_classes: tuple[tuple[int, ...], ...] = ((1, 5, 8),)  # Fashion-MNIST's starting classes, one case each (not named in the paper)
    fashion_added: tuple[int, ...] = (9,)  # the class added to each
    train_per_class: int = 100  # training images per class, a seeded random subset (paper: all, 6,000)
    test_per_class: int = 100  # test images per class (paper: all, 1,000 or a few fewer)
    backbone: str = "small"  # "small": pre-activation ResNet, 1 block per stage, widths 8-64; "resnet50": the paper's ResNet50V2
    input_size: int = 28  # images are resized to this before the backbone (paper: 128)
    fpn_channels: int = 16  # channels of each pyramid level (the FPN paper: 256)
    hidden: int = 64  # width of the straight classifier's dense layer (not given in the paper)
    mnist_epochs: int = 3  # straight classifier's epochs on MNIST (paper: 4)
    fashion_epochs: int = 4  # ... on Fashion-MNIST (paper: 8)
    straight_schedule: str = "constant"  # its learning rate: "constant" (paper) or "onecycle"
    lr: float = 0.001  # NAdam learning rate of the straight classifier (paper: 1e-4)
    batch_size: int = 16  # images per step of the straight classifier (not given; Keras' default: 32)
    embedding_dim: int = 64  # size of an embedding (paper: 64)
    batch_class_repeats: int = 15  # triplets per class per batch (paper: 15)
    similarity_scale: float = 0.2  # k of Eq. (2) (paper: 0.2)
    margin: float = 0.1  # m of Eq. (3), on the scaled similarities in [-k, k] (not given in the paper)
    head_lr: float = 0.001  # NAdam's starting learning rate for the embedding layer (paper: 1e-3)
    lr_factor: float = 0.1  # learning-rate cut on a plateau of the training loss (Keras' default)
    lr_min_delta: float = 1e-4  # an epoch improves on the best loss only by more than this, absolute (Keras' default)
    lr_patience: int = 2  # epochs without improvement before a cut
    min_lr: float = 5e-05  # training stops below this learning rate
    max_head_epochs: int = 5  # ... or after this many epochs
    knn_k: int = 5  # neighbours of the k-nearest-neighbours classifier (scikit-learn's default)
    search_k: int = 10  # neighbours returned by the similarity search; precision@k uses the same k
    tsne_points: int = 400  # test images per projection in the 2-D map (0: no map)
    amp: bool = False  # bfloat16 autocast where the device computes it natively (CUDA; a CPU with AVX-512 BF16 or AMX)
    channels_last: bool = False  # NHWC memory layout, for tensor cores

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "fashion_classes", tuple(tuple(c) if isinstance(c, (list, tuple)) else c for c in self.fashion_classes))
        if any(not isinstance(c, tuple) for c in self.fashion_classes):
            raise ValueError(f"fashion_classes {self.fashion_classes} must be a list of lists of classes, e.g. [[1, 5, 8], [0, 1, 2]]")
        self.task, self.pyramid, self.straight, self.head, self.evaluation  # their checks
        need = max(2, self.knn_k, self.search_k)
        if self.train_per_class < need:
            raise ValueError(f"train_per_class={self.train_per_class} must be at least knn_k, search_k and 2 ({need})")

    @property
    def task(self) -> Task:
        return Task(tuple(self.datasets), tuple(self.classes), self.added_class, self.train_per_class, self.test_per_class,
                    self.fashion_classes, tuple(self.fashion_added))

    @property
    def pyramid(self) -> Pyramid:
        return Pyramid(self.backbone, self.input_size, self.fpn_channels, self.hidden, self.embedding_dim)

    @property
    def straight(self) -> Straight:
        return Straight(self.mnist_epochs, self.fashion_epochs, self.lr, self.batch_size, self.amp, self.channels_last, self.straight_schedule)

    @property
    def head(self) -> HeadSchedule:
        return HeadSchedule(batch_class_repeats=self.batch_class_repeats, scale=self.similarity_scale, margin=self.margin, lr=self.head_lr,
                            factor=self.lr_factor, min_delta=self.lr_min_delta, patience=self.lr_patience, min_lr=self.min_lr, max_epochs=self.max_head_epochs)

    @property
    def evaluation(self) -> Evaluation:
        return Evaluation(self.knn_k, self.search_k, self.tsne_points)


BACKBONE_COST = {"small": 1.0, "resnet50": 60.0}  # a 28-px image through the trunk, relative to the small backbone


def work(s: Settings) -> float:
    """What the settings ask, in 28-px images through the small trunk (relative units): both straight
    networks (forward and backward: three passes an image), and the embedding layer trained with the
    trunk in every step (three images a triplet, forward only) at most epochs, for every case and seed."""
    n = s.task.train_per_class
    per_image = BACKBONE_COST[s.pyramid.backbone] * (s.pyramid.input_size / 28) ** 2 * max(1.0, s.pyramid.fpn_channels / 16)
    total = 0.0
    for case in s.task.cases:  # the controls train on cached features: no trunk pass of their own
        k, epochs = len(case.classes), s.straight.recipe(case.dataset).epochs
        total += 3 * n * (2 * k + 1) * epochs + 3 * n * (2 * k + 1) * s.head.max_epochs
    return len(s.run.seeds) * total * per_image


# Names of the results (the chapter imports them).
KNN, CENTROID = "k-nearest neighbours", "nearest class mean"
MODEL3, MODEL4 = "3-class model", "4-class model"  # Table 2's columns: the generator before and after the added class
STRAIGHT3, STRAIGHT4 = "straight 3-class", "straight 4-class"
STRAIGHT4_OLD = "straight 4-class, starting classes"
KNN_OLD_BEFORE, KNN_OLD_AFTER = "k-nearest neighbours, starting classes, before", "k-nearest neighbours, starting classes, after"
# The extension's controls, on the same cached trunk features and images: a new softmax head, and kNN with no triplet layer.
SOFTMAX4, KNN_RAW4 = "control: new softmax head on the frozen trunk", "control: kNN on the trunk's features"
SOFTMAX_HEAD = "softmax head (control)"  # its HeadReport, beside MODEL3 and MODEL4


def on_embeddings(classifier: str, model: str) -> str:
    """The result name of a classic classifier on the embeddings of the MODEL3 or MODEL4 generator."""
    return f"{classifier}, {model}"


def no_further(classifier: str, added_only: bool = False) -> str:
    """The result name of a classifier on the 3-class generator's embeddings of all four classes (no further training)."""
    return f"{classifier}, no further training" + (", added class" if added_only else "")


# Names of the measured times (seconds of lib.training.clock: process CPU time on a CPU).
T_STRAIGHT3, T_STRAIGHT4 = "straight 3-class network", "straight 4-class network from scratch"
T_FEATURES_OLD, T_FEATURES_ADDED = "trunk over the starting classes' images", "trunk over the added class's images"
T_HEAD3, T_HEAD3_UNCACHED = "embedding layer, 3 classes, cached features", "embedding layer, 3 classes, trunk every step"
T_HEAD4, T_HEAD4_UNCACHED = "embedding layer trained further, cached features", "embedding layer trained further, trunk every step"
T_EMBED3, T_REEMBED = "embedding the training images (layer only)", "re-embedding the training images (layer only)"
T_CLASSIC3, T_CLASSIC4 = "classic classifiers, 3 classes", "classic classifiers, 4 classes"
T_SOFTMAX4, T_KNN_RAW4 = "softmax head on cached features, 4 classes", "kNN on the trunk's features, fit and test, 4 classes"


@dataclass(frozen=True)
class Route:
    """One way to a classifier, as the sum of measured steps (Eqs. 4-7 of the paper)."""

    name: str
    steps: tuple[str, ...]


# Eqs. (4)-(7), machine time only (the paper's t_d.p., t_imp. and t_mod. are a person's work). "Cached": the
# frozen trunk's features computed once per image; "as Keras trains": the trunk runs on every image of every
# triplet, and again to re-embed, as a Keras model with frozen layers does (the paper's setting).
EQ4 = Route("Eq. (4): a conventional 3-class network", (T_STRAIGHT3,))
EQ5_KERAS = Route("Eq. (5): the embedding route to 3 classes, as Keras trains",
                  (T_STRAIGHT3, T_HEAD3_UNCACHED, T_FEATURES_OLD, T_EMBED3, T_CLASSIC3))
EQ5_CACHED = Route("Eq. (5): the embedding route to 3 classes, cached features", (T_STRAIGHT3, T_FEATURES_OLD, T_HEAD3, T_EMBED3, T_CLASSIC3))
EQ6 = Route("Eq. (6): a new 4-class network", (T_STRAIGHT4,))
EQ7_KERAS = Route("Eq. (7): adding the class the embedding way, as Keras trains",
                  (T_HEAD4_UNCACHED, T_FEATURES_OLD, T_FEATURES_ADDED, T_REEMBED, T_CLASSIC4))
EQ7_CACHED = Route("Eq. (7): adding the class the embedding way, cached features", (T_FEATURES_ADDED, T_HEAD4, T_REEMBED, T_CLASSIC4))
ROUTES = (EQ4, EQ5_KERAS, EQ5_CACHED, EQ6, EQ7_KERAS, EQ7_CACHED)
# The controls' ways to add the class, each from the 3-class network's cached trunk features (as EQ7_CACHED).
CONTROL_SOFTMAX = Route("Control: a new softmax head on the frozen trunk, cached features", (T_FEATURES_ADDED, T_SOFTMAX4))
CONTROL_KNN = Route("Control: kNN on the frozen trunk's features", (T_FEATURES_ADDED, T_KNN_RAW4))
CONTROLS = (CONTROL_SOFTMAX, CONTROL_KNN)


def knn_on_features(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, k: int) -> np.ndarray:
    """kNN on features scaled to unit length (cosine similarity, the metric the embeddings are searched
    with): the predicted class of every test row."""
    unit = lambda x: torch.nn.functional.normalize(x.float().cpu(), dim=1).numpy()  # noqa: E731
    return KNeighborsClassifier(n_neighbors=k).fit(unit(train_x), train_y.cpu().numpy()).predict(unit(test_x))


def classic_classifiers(seed: int, knn_k: int) -> dict:
    """Table 2's rows: the paper's two (kNN, random forest) and the usual others, scikit-learn defaults."""
    return {
        KNN: KNeighborsClassifier(n_neighbors=knn_k),
        "random forest": RandomForestClassifier(random_state=seed, n_jobs=-1),
        "logistic regression": LogisticRegression(max_iter=2000),
        "SVM (RBF)": SVC(),
        "decision tree": DecisionTreeClassifier(random_state=seed),
        "naive Bayes (Gaussian)": GaussianNB(),
    }


def fit_classic(classifiers: dict, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor) -> dict:
    """Fit each classifier on embeddings; ``{name: {"accuracy", "fit_s", "predicted"}}``."""
    out = {}
    for name, clf in classifiers.items():
        started = time.perf_counter()
        clf.fit(train_x.numpy(), train_y.numpy())
        fit_s = time.perf_counter() - started
        predicted = clf.predict(test_x.numpy())
        out[name] = {"accuracy": float((predicted == test_y.numpy()).mean()), "fit_s": fit_s, "predicted": predicted}
    return out


@dataclass
class ExtensionSplits:
    train: Split  # images of classes + added_class, labels 0..K (added = K)
    test: Split

    def old(self, split: Split) -> Split:
        """Only the starting classes' images."""
        return take(split, torch.nonzero(split.labels < self.num_old).flatten())

    @property
    def num_old(self) -> int:
        return int(self.train.labels.max())


def make_splits(dataset: Dataset, task: Task, seed: int, case: Case | None = None) -> ExtensionSplits:
    """Seeded per-class subsets of the dataset's own train and test sets, relabelled: ``case``'s classes
    (by default ``task``'s MNIST classes), the added one last."""
    order = [*task.classes, task.added_class] if case is None else [*case.classes, case.added_class]
    train, test = select_classes(dataset.train, order), select_classes(dataset.test, order)
    return ExtensionSplits(take(train, per_class_subset(train.labels, task.train_per_class, seed)),
                           take(test, per_class_subset(test.labels, task.test_per_class, seed)))


@dataclass
class ExtensionRun:
    """Everything one dataset and seed produced: accuracies, times, embeddings, search results."""

    accuracy: dict = field(default_factory=dict)  # name -> test accuracy
    seconds: dict = field(default_factory=dict)  # step or route -> seconds of lib.training.clock
    head_reports: dict = field(default_factory=dict)  # MODEL3 / MODEL4 -> HeadReport
    straight_images_per_s: float = 0.0
    curves: dict = field(default_factory=dict)  # "straight3" / "straight4" -> test accuracy after every epoch
    confusion3: list = field(default_factory=list)  # the straight 3-class network's confusion matrix on the test images
    same_head: dict = field(default_factory=dict)  # MODEL3 / MODEL4 -> whether the cached and the trunk-every-step trainings agree
    maps: dict = field(default_factory=dict)  # MODEL3 / MODEL4 -> unit vectors of the test images map_rows (for the 2-D map)
    map_rows: torch.Tensor | None = None  # up to tsne_points test images, seeded
    search: dict = field(default_factory=dict)  # precision@k per index and query set
    neighbours: np.ndarray | None = None  # training-set rows of the search grid's neighbours, extended index
    query_ids: np.ndarray | None = None
    resumed: int = 0  # trainings continued from a checkpoint
    trainings: int = 0


def default_case(settings: Settings, dataset: str) -> Case:
    """The dataset's first class choice."""
    return next(c for c in settings.task.cases if c.dataset == dataset)


def extension_unit(settings: Settings, dataset: str, data: str, seed: int, case: Case | None = None) -> Unit:
    """The whole procedure for one case and seed: seven trainings (two straight networks, the layer
    twice each way, the control's softmax head), the classic classifiers, the search."""
    case = case or default_case(settings, dataset)
    n, k, m = settings.task.train_per_class, len(case.classes), settings.task.test_per_class
    recipe, head = settings.straight.recipe(dataset), settings.head
    config = settings.pyramid.config(k)
    rows = n * (2 * k + 1)  # the 3-class and the 4-class images
    work = Work(train_images=rows * recipe.epochs, forward_images=3 * rows * head.max_epochs + 2 * (n + m) * (k + 1) + (2 * k + 1) * m * recipe.epochs,
                flops=forward_flops(lambda: StraightClassifier(config), (1, 28, 28), key=config),
                steps=-(-rows // recipe.batch_size) * recipe.epochs + 4 * head.max_epochs * -(-n // head.batch_class_repeats),
                cpu_seconds=2 * 5e-8 * (n * (k + 1)) ** 2)
    key = ("extension", dataset, data, case, settings.task.train_per_class, settings.task.test_per_class, settings.pyramid, recipe, head,
           settings.evaluation, seed)
    return Unit(f"{case.name}-seed{seed}", key, f"the three steps, the controls and a new 4-class network on {dataset}, classes "
                f"{list(case.classes)} + {case.added_class}, seed {seed}", work)


def run_extension(splits: ExtensionSplits, settings: Settings, dataset: str, data: str, *, seed: int, device: torch.device,
                  records: Records, index_dir: Path | None = None, case: Case | None = None) -> ExtensionRun:
    """The paper's three steps and the from-scratch 4-class network for one dataset and seed (a unit,
    :func:`extension_unit`; ``data`` is the dataset's fingerprint).

    Every step is timed by :func:`lib.training.clock`. The embedding layer is trained twice in each
    step, from the same start and with the same triplets: once on cached trunk features (the results
    used), once with the trunk in every step (the paper's Keras setting; timed, and checked to end
    in the same place).
    """
    case = case or default_case(settings, dataset)
    unit = extension_unit(settings, dataset, data, seed, case)
    record = records.run(unit, lambda checkpoint: extension_record(
        _extension(splits, settings, dataset, seed=seed, device=device, checkpoint=checkpoint, index_dir=index_dir, tag=case.name)))
    fields = {f.name for f in dataclasses.fields(ExtensionRun)}
    return ExtensionRun(**{k: v for k, v in record.items() if k in fields} | {
        "head_reports": {k: HeadReport(**v) for k, v in record["head_reports"].items()},
        "neighbours": record["neighbours"].numpy(), "query_ids": record["query_ids"].numpy()})


def extension_record(run: ExtensionRun) -> dict:
    """An :class:`ExtensionRun` as a unit's record: tensors and plain containers."""
    record = dataclasses.asdict(run)
    record["head_reports"] = {k: v._asdict() for k, v in run.head_reports.items()}
    record["neighbours"], record["query_ids"] = torch.from_numpy(run.neighbours), torch.from_numpy(run.query_ids)
    return record


def check_layout(device: torch.device, channels_last: bool) -> None:
    """Refuse the NHWC layout for this chapter's network on a CPU with more than one thread.

    There, oneDNN's weight gradient of the pyramid's first 1 x 1 stride-2 shortcut (8 -> 16 channels
    at 28 px) writes past its buffer whenever a batch has an odd number of images (the last batch of an
    epoch): the heap is corrupted and the process dies (PyTorch 2.14.1; a GPU is not affected). The
    contiguous layout, or one thread, is safe (``tests/test_cpu_fast_path.py`` keeps both so)."""
    if channels_last and device.type == "cpu" and torch.get_num_threads() > 1:
        raise ValueError(f"channels_last=True on a CPU with {torch.get_num_threads()} threads corrupts the heap in oneDNN's weight gradient "
                         "of this network's 1x1 stride-2 shortcut (odd batches): set channels_last=False, or run with BOOK_THREADS=1")


def _extension(splits: ExtensionSplits, settings: Settings, dataset: str, *, seed: int, device: torch.device,
               checkpoint: Checkpoint | None, index_dir: Path | None, tag: str) -> ExtensionRun:
    run, k_old = ExtensionRun(), splits.num_old
    train_old, test_old = splits.old(splits.train), splits.old(splits.test)
    is_new_train, is_new_test = splits.train.labels == k_old, splits.test.labels == k_old
    recipe, pyramid, ev = settings.straight.recipe(dataset), settings.pyramid, settings.evaluation
    amp, channels_last = recipe.amp, recipe.channels_last
    check_layout(device, channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    def timed(name: str, step):
        started = clock(device)
        out = step()
        run.seconds[name] = clock(device) - started
        return out

    def straight(num_classes: int, train: Split, test: Split, name: str):
        seed_everything(seed)  # the initial weights too
        config = pyramid.config(num_classes)
        model = StraightClassifier(config)

        def test_accuracy(m) -> float:  # after every epoch, outside the timed training: the convergence curve
            return accuracy(predict(m, test.images, amp=amp, channels_last=channels_last), test.labels)

        report = fit_classifier(model, train, recipe, seed=seed, device=device, checkpoint=checkpoint.part(name) if checkpoint else None,
                                evaluate=test_accuracy, desc=f"{tag} {name} network")
        run.curves[name] = list(report.evaluations)
        run.resumed, run.trainings = run.resumed + report.resumed, run.trainings + 1
        return model, report

    # Step 1: the straight 3-class classifier.
    straight3, report = straight(k_old, train_old, test_old, "straight3")
    run.seconds[T_STRAIGHT3] = report.clock_s
    run.straight_images_per_s = report.images_per_s
    logits3 = predict(straight3, test_old.images, amp=amp, channels_last=channels_last)
    run.accuracy[STRAIGHT3] = accuracy(logits3, test_old.labels)
    run.confusion3 = confusion(logits3.argmax(1), test_old.labels, k_old)

    # Step 2: the frozen trunk's features, the triplet-trained layer (cached, and with the trunk every step), the classic classifiers.
    net = EmbeddingNet(straight3.trunk, pyramid.embedding_dim).to(device)
    feats = dict(batch_size=512, amp=amp, channels_last=channels_last, to_cpu=False)  # features stay on the device
    train_f_old = timed(T_FEATURES_OLD, lambda: predict(net.trunk, splits.train.images[~is_new_train], **feats))
    train_f_new = timed(T_FEATURES_ADDED, lambda: predict(net.trunk, splits.train.images[is_new_train], **feats))
    train_f = torch.empty(len(splits.train.labels), train_f_old.shape[1], device=device)
    train_f[~is_new_train.to(device)], train_f[is_new_train.to(device)] = train_f_old, train_f_new
    test_f = predict(net.trunk, splits.test.images, **feats)
    images = splits.train.images.to(device)

    def trunk(rows: torch.Tensor) -> torch.Tensor:  # uint8 images -> features, the frozen trunk (eval mode)
        with autocast(device, amp):
            return net.trunk(to_unit(rows).contiguous(memory_format=fmt)).float()

    def head_training(head, inputs, labels, stage: str, cached: bool):
        name = f"head{stage}{'' if cached else '-trunk'}"
        report = fit_embedding_head(head, inputs, labels, settings.head, seed=seed, encode=None if cached else trunk,
                                    checkpoint=checkpoint.part(name) if checkpoint else None,
                                    desc=f"{tag} {stage}-class layer, {'cached' if cached else 'trunk every step'}")
        run.resumed, run.trainings = run.resumed + report.resumed, run.trainings + 1
        return report

    seed_everything(seed)
    net.head.reset_parameters()  # the head's initial weights from the seed
    start3 = copy.deepcopy(net.head.state_dict())
    report3 = head_training(net.head, train_f[~is_new_train.to(device)], train_old.labels, "3", cached=True)
    keras3 = copy.deepcopy(net.head)
    keras3.load_state_dict(start3)
    keras3_report = head_training(keras3, images[~is_new_train.to(device)], train_old.labels, "3", cached=False)
    run.head_reports[MODEL3], run.seconds[T_HEAD3], run.seconds[T_HEAD3_UNCACHED] = report3, report3.clock_s, keras3_report.clock_s
    run.same_head[MODEL3] = same_training(report3, keras3_report)
    emb3_train = timed(T_EMBED3, lambda: embed(net.head, train_f))
    emb3_test = embed(net.head, test_f)
    run.map_rows = torch.randperm(len(splits.test.labels), generator=torch.Generator().manual_seed(seed))[: settings.evaluation.tsne_points]
    run.maps[MODEL3] = emb3_test[run.map_rows]
    old_tr, old_te = ~is_new_train, ~is_new_test
    classic3 = timed(T_CLASSIC3, lambda: fit_classic(classic_classifiers(seed, ev.knn_k), emb3_train[old_tr], splits.train.labels[old_tr],
                                                     emb3_test[old_te], splits.test.labels[old_te]))
    for name, r in classic3.items():
        run.accuracy[on_embeddings(name, MODEL3)] = r["accuracy"]

    # Beyond the paper: the added class embedded by the 3-class layer, no further training.
    nothing_more = fit_classic({KNN: KNeighborsClassifier(n_neighbors=ev.knn_k), CENTROID: NearestCentroid()},
                               emb3_train, splits.train.labels, emb3_test, splits.test.labels)
    for name, r in nothing_more.items():
        run.accuracy[no_further(name)] = r["accuracy"]
        run.accuracy[no_further(name, added_only=True)] = float((r["predicted"][is_new_test.numpy()] == k_old).mean())

    # Step 3: train the same layer further on all four classes (both ways), re-embed, retrain the classic classifiers.
    head4, keras4 = copy.deepcopy(net.head), copy.deepcopy(net.head)
    report4 = head_training(head4, train_f, splits.train.labels, "4", cached=True)
    keras4_report = head_training(keras4, images, splits.train.labels, "4", cached=False)
    run.head_reports[MODEL4], run.seconds[T_HEAD4], run.seconds[T_HEAD4_UNCACHED] = report4, report4.clock_s, keras4_report.clock_s
    run.same_head[MODEL4] = same_training(report4, keras4_report)
    emb4_train = timed(T_REEMBED, lambda: embed(head4, train_f))
    emb4_test = embed(head4, test_f)
    run.maps[MODEL4] = emb4_test[run.map_rows]
    classic4 = timed(T_CLASSIC4, lambda: fit_classic(classic_classifiers(seed, ev.knn_k), emb4_train, splits.train.labels, emb4_test,
                                                     splits.test.labels))
    for name, r in classic4.items():
        run.accuracy[on_embeddings(name, MODEL4)] = r["accuracy"]
    knn_before = classic3[KNN]["predicted"]
    knn_after = classic4[KNN]["predicted"][old_te.numpy()]
    run.accuracy[KNN_OLD_BEFORE] = float((knn_before == test_old.labels.numpy()).mean())
    run.accuracy[KNN_OLD_AFTER] = float((knn_after == test_old.labels.numpy()).mean())

    # The controls, on the same cached features: a new 4-output softmax head on the frozen trunk (the cheap
    # conventional extension, trained by the embedding layer's rule), and kNN on the trunk's own features.
    seed_everything(seed)
    softmax = copy.deepcopy(straight3.head)
    softmax[-1] = torch.nn.Linear(softmax[-1].in_features, k_old + 1)
    for layer in softmax:  # a new head: every layer's weights drawn again from the seed
        if hasattr(layer, "reset_parameters"):
            layer.reset_parameters()
    softmax_report = fit_softmax_head(softmax, train_f, splits.train.labels, settings.head, seed=seed,
                                      checkpoint=checkpoint.part("softmax4") if checkpoint else None, desc=f"{tag} softmax head (control)")
    run.resumed, run.trainings = run.resumed + softmax_report.resumed, run.trainings + 1
    run.head_reports[SOFTMAX_HEAD], run.seconds[T_SOFTMAX4] = softmax_report, softmax_report.clock_s
    with torch.no_grad():
        run.accuracy[SOFTMAX4] = accuracy(softmax(test_f.float()).cpu(), splits.test.labels)
    knn_raw = timed(T_KNN_RAW4, lambda: knn_on_features(train_f, splits.train.labels, test_f, ev.knn_k))
    run.accuracy[KNN_RAW4] = float((knn_raw == splits.test.labels.numpy()).mean())

    # Eq. (6): the conventional alternative, a new 4-class straight classifier on the same images.
    straight4, report = straight(k_old + 1, splits.train, splits.test, "straight4")
    run.seconds[T_STRAIGHT4] = report.clock_s
    logits = predict(straight4, splits.test.images, amp=amp, channels_last=channels_last)
    run.accuracy[STRAIGHT4] = accuracy(logits, splits.test.labels)
    run.accuracy[STRAIGHT4_OLD] = accuracy(logits[old_te], test_old.labels)
    for route in (*ROUTES, *CONTROLS):
        run.seconds[route.name] = sum(run.seconds[step] for step in route.steps)

    # Step 6: similarity search in a saved, reloaded, extended index.
    run.search, run.query_ids, run.neighbours = similarity_search(splits, emb3_train, emb3_test, emb4_train, emb4_test, ev.search_k, index_dir, tag, seed)
    return run


def same_training(a: HeadReport, b: HeadReport, tolerance: float = 1e-3) -> bool:
    """Whether two trainings of the embedding layer (cached features, trunk every step) took the same
    path: as many epochs, the same learning rates, losses equal to ``tolerance`` (relative)."""
    return len(a.losses) == len(b.losses) and a.lrs == b.lrs and all(abs(x - y) <= tolerance * max(abs(x), 1e-12) for x, y in zip(a.losses, b.losses))


def confusion(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows = true class, columns = predicted class."""
    return torch.bincount(labels * num_classes + predicted, minlength=num_classes * num_classes).view(num_classes, num_classes).tolist()


def plan(settings: Settings, records: Records) -> list[Unit]:
    """Every unit the chapter runs, in its order (the data must be findable: their fingerprints are part of the keys)."""
    units = []
    for case in settings.task.cases:
        data = locate(case.dataset)
        if data is None:
            raise DataError(f"{case.dataset} is in no data root: the plan needs its files (see data/README.md)")
        units += [extension_unit(settings, case.dataset, data, seed, case) for seed in settings.run.seeds]
    return units


def similarity_search(splits: ExtensionSplits, emb3_train, emb3_test, emb4_train, emb4_test, k: int, index_dir: Path | None, tag: str, seed: int):
    """Precision@k of test queries against training vectors: the 3-class index, the same index
    with the added class's vectors appended (no rebuild, no retraining), and a 4-class index."""
    k_old = splits.num_old
    new_tr, new_te = splits.train.labels == k_old, splits.test.labels == k_old
    rows = torch.arange(len(splits.train.labels))
    index = VectorIndex(emb3_train.shape[1])
    index.add(emb3_train[~new_tr], splits.train.labels[~new_tr], rows[~new_tr])
    if index_dir is not None:  # persisted and read back: the search below runs on the reloaded index
        index = VectorIndex.load(index.save(index_dir / f"{tag}-seed{seed}").with_suffix(""))
    out = {"3-class index, starting classes": precision_at_k(index, emb3_test[~new_te], splits.test.labels[~new_te], k)}
    index.add(emb3_train[new_tr], splits.train.labels[new_tr], rows[new_tr])
    out["extended index, added class"] = precision_at_k(index, emb3_test[new_te], splits.test.labels[new_te], k)
    out["extended index, starting classes"] = precision_at_k(index, emb3_test[~new_te], splits.test.labels[~new_te], k)
    rebuilt = VectorIndex(emb4_train.shape[1])
    rebuilt.add(emb4_train, splits.train.labels, rows)
    out["4-class index, all classes"] = precision_at_k(rebuilt, emb4_test, splits.test.labels, k)
    generator = torch.Generator().manual_seed(seed)
    query_ids = torch.cat([torch.nonzero(splits.test.labels == c).flatten()[torch.randperm(int((splits.test.labels == c).sum()), generator=generator)[:2]]
                           for c in range(k_old + 1)]).numpy()
    return out, query_ids, index.search(emb3_test[query_ids], k).ids  # training-set rows of the neighbours
