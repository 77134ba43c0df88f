"""Chapter 4's experiment around :mod:`lib.cluster_labelling`: data, annotator, judge, baselines.

The MNIST training set is cut four ways, stratified and seeded: images for the simulated
annotator, images for the judge of reconstructions (both never seen by the VAE), validation
images for reconstruction accuracy (the paper's §3.2 has 128; more resolve a smaller
difference) and the VAE's training images. The test set is MNIST's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .cluster_labelling import Annotator, LabellingConfig, label_clusters, random_labelling, train_labelling_vae
from .data import DataError, Dataset, Split, batches, locate, stratified_split, take, to_unit
from .losses import weighted_cross_entropy
from .evaluation import accuracy
from .models.small_cnn import SmallCNN, SmallCNNConfig
from .models.vae import LabellingVAE, VAEConfig
from .settings import ChapterSettings, distinct_positive, positive
from .training import Checkpoint, Recipe, fit_classifier, predict, seed_everything
from .units import Records, Unit, Work, forward_flops

MNIST_TRAIN, MNIST_TEST = 60_000, 10_000

# The ways to label the training images that the chapter compares (names of its results, imported by the chapter).
CLUSTER_CENTRES = "cluster centres (the paper)"
RANDOM_IMAGES = "random images, as many labels an epoch, as much supervision"
ORACLE = "cluster centres, an oracle annotator (the cluster's majority digit)"
LABELS_ALONE = "random images, a classifier trained on them alone"
PIXEL_KMEANS = "k-means on raw pixels"


@dataclass(frozen=True)
class Settings(ChapterSettings):
    """Chapter 4's parameters: its ``parameters`` cell, each value checked here; the defaults are the quick profile."""

    seeds: tuple[int, ...] = (0, 1)  # one training per seed and setting
    split_seed: int = 0  # seed of the stratified annotator / judge / validation / training split
    n_train: int = 6000  # VAE training images, labels unused (paper §3.1: 59,872)
    n_val: int = 500  # validation images for reconstruction accuracy (paper §3.2: 128)
    n_annotator: int = 5000  # images the simulated annotator learns from, never seen by the VAE
    n_judge: int = 5000  # images the judge of reconstructions learns from, seen by neither
    n_test: int = 2000  # MNIST test images used for test accuracy, a stratified subset (paper: all 10,000)
    annotator_epochs: int = 2  # epochs of the annotator's (and the judge's) training
    z_dim: int = 10  # latent dimension of the semi-supervised model (paper §4: 10)
    hidden: tuple[int, ...] = (512, 128, 32)  # encoder widths, decoder mirrored (paper §4: third layer 32)
    beta: float = 5.0  # KL weight in Eq. (1) (paper §3.3: 5)
    gamma: float = 150.0  # classification weight in Eq. (3) (paper Fig. 4: 150)
    epochs: int = 5  # training epochs (paper §4: 5)
    unsupervised_epochs: int = 1  # epochs of Eq. (1) alone before the first labelling (paper §4: 1)
    lr: float = 0.002  # Adam learning rate (not given in the paper)
    batch_size: int = 64  # images per step (not given; Keras' default: 32)
    k_min: int = 4  # smallest k the elbow method considers
    k_max: int = 15  # largest k the elbow method considers
    elbow_sample: int = 2000  # latents used to choose k; the final k-means uses all
    valid_confidence: float = 0.5  # below this confidence a decoded centre is "not a valid digit"
    a: float = 1.0  # distance decay of Eq. (2), per unit of latent distance (not given in the paper)
    z_dims: tuple[int, ...] = (2, 10)  # latent dimensions swept with gamma 0, the paper's Fig. 5
    budget_ks: tuple[int, ...] = ()  # clusters per round fixed to these k (the paper's 10-16 labels an epoch), each beside its random control
    paper_k: int = 0  # the arm judged against the paper: the fixed k of one of budget_ks, or 0 for the elbow arm
    oracle: bool = False  # control: the judged arm again, its centres labelled with their cluster's majority true digit
    beta_control: float = 0.0  # > 0: the judged arm and the plain VAE again at this KL weight (0: not run)

    def __post_init__(self):
        super().__post_init__()
        positive(n_train=self.n_train, n_val=self.n_val, n_annotator=self.n_annotator, n_judge=self.n_judge, n_test=self.n_test,
                 z_dim=self.z_dim, epochs=self.epochs, batch_size=self.batch_size)
        total = self.n_train + self.n_val + self.n_annotator + self.n_judge
        if total > MNIST_TRAIN:
            raise ValueError(f"n_train + n_val + n_annotator + n_judge = {total} exceeds MNIST's {MNIST_TRAIN} training images")
        if self.n_test > MNIST_TEST:
            raise ValueError(f"n_test={self.n_test} exceeds MNIST's {MNIST_TEST} test images")
        if not self.lr > 0 or self.beta < 0 or self.gamma < 0 or self.a < 0:
            raise ValueError(f"lr={self.lr} must be positive and beta={self.beta}, gamma={self.gamma}, a={self.a} non-negative")
        distinct_positive("z_dims", self.z_dims)
        if any(not isinstance(k, int) or k < 2 for k in self.budget_ks):
            raise ValueError(f"budget_ks {list(self.budget_ks)} must all be integers of at least 2 (clusters per round)")
        if len(set(self.budget_ks)) != len(self.budget_ks):
            raise ValueError(f"budget_ks {list(self.budget_ks)} must be distinct")
        if self.paper_k and self.paper_k not in self.budget_ks:
            raise ValueError(f"paper_k={self.paper_k} must be 0 (the elbow arm) or one of budget_ks {list(self.budget_ks)}")
        if self.beta_control < 0 or (self.beta_control and self.beta_control == self.beta):
            raise ValueError(f"beta_control={self.beta_control} must be 0 (not run) or a positive KL weight other than beta={self.beta}")
        self.annotator, self.method  # their own checks

    @property
    def data(self) -> DataSplit:
        return DataSplit(self.split_seed, self.n_train, self.n_val, self.n_annotator, self.n_judge, self.n_test)

    @property
    def annotator(self) -> Recipe:
        """The simulated annotator's training (and the judge's)."""
        return Recipe(epochs=self.annotator_epochs, lr=3e-3, batch_size=64)

    @property
    def method(self) -> LabellingConfig:
        """The paper's method: VAE, Eqs. (1)-(3), clustering and labelling."""
        return LabellingConfig(z_dim=self.z_dim, hidden=tuple(self.hidden), beta=self.beta, gamma=self.gamma, epochs=self.epochs,
                               unsupervised_epochs=self.unsupervised_epochs, lr=self.lr, batch_size=self.batch_size, k_min=self.k_min,
                               k_max=self.k_max, valid_confidence=self.valid_confidence, a=self.a, elbow_sample=self.elbow_sample)

    @property
    def sweeps(self) -> Sweeps:
        return Sweeps(tuple(self.z_dims), tuple(self.budget_ks), self.paper_k, bool(self.oracle), float(self.beta_control))


@dataclass(frozen=True)
class DataSplit:
    """How MNIST is cut; a group of :class:`Settings`' fields."""

    split_seed: int
    n_train: int
    n_val: int
    n_annotator: int
    n_judge: int
    n_test: int


@dataclass(frozen=True)
class Sweeps:
    """The settings swept around the method (a group of :class:`Settings`)."""

    z_dims: tuple[int, ...]
    budget_ks: tuple[int, ...]
    paper_k: int = 0
    oracle: bool = False
    beta_control: float = 0.0


def work(s: Settings) -> float:
    """What the settings ask, in images through a network (relative units): every VAE training of
    every seed (its MLP's size relative to the paper's), and the annotator's and the judge's."""
    m = s.method
    widths = [784, *m.hidden, m.z_dim]
    mlp = sum(a * b for a, b in zip(widths[:-1], widths[1:])) / 468_000  # the paper's encoder (512, 128, 32) is 1
    w = s.sweeps
    vaes = (1 + 2 * len(w.budget_ks) + (w.paper_k == 0)  # the elbow arm, each fixed k and its random control, the elbow's control if judged
            + len(w.z_dims) + (m.z_dim not in w.z_dims) + w.oracle + 2 * (w.beta_control > 0))  # plain per z, the oracle, the beta pair
    readers = 2 * (s.data.n_annotator + s.data.n_judge) * s.annotator.epochs  # small CNNs, about twice the MLP's cost an image
    return len(s.run.seeds) * s.data.n_train * m.epochs * vaes * mlp + readers


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


READERS = {"annotator": 0, "judge": 1}  # the two digit readers and the offset of their seeds from split_seed


def reader_unit(s: Settings, role: str, data: str) -> Unit:
    n = s.data.n_annotator if role == "annotator" else s.data.n_judge
    config = SmallCNNConfig(in_channels=1, num_classes=10, width=16)
    work = Work(n * s.annotator.epochs, s.data.n_test, forward_flops(lambda: SmallCNN(config), (1, 28, 28), key=config),
                s.annotator.epochs * -(-n // s.annotator.batch_size))
    return Unit(role, ("reader", role, data, s.data, s.annotator), f"the simulated {role}: a small CNN on its own MNIST images", work)


def train_reader(splits: Splits, s: Settings, role: str, data: str, *, device: torch.device, records: Records) -> tuple[Annotator, float]:
    """The annotator or the judge (a unit each, :func:`reader_unit`): trained once, its weights in its record."""
    seed = s.data.split_seed + READERS[role]

    def compute(checkpoint: Checkpoint) -> dict:
        reader, test_accuracy = train_annotator(getattr(splits, role), splits.test, s.annotator, seed=seed, device=device,
                                                checkpoint=checkpoint, desc=role)
        return {"state": {k: v.cpu() for k, v in reader.model.state_dict().items()}, "test_accuracy": test_accuracy}

    record = records.run(reader_unit(s, role, data), compute)
    model = SmallCNN(SmallCNNConfig(in_channels=1, num_classes=10, width=16))
    model.load_state_dict(record["state"])
    return Annotator(model.to(device).eval()), record["test_accuracy"]


def vae_unit(s: Settings, tag: str, seed: int, config: LabellingConfig, data: str) -> Unit:
    """One training of the labelling VAE (its annotator and judge are part of its key: their labels shape it)."""
    widths = [784, *config.hidden, config.z_dim]
    flops = 2 * 2 * sum(a * b for a, b in zip(widths[:-1], widths[1:]))  # encoder and decoder, a multiply and an add each
    n = s.data.n_train
    work = Work(n * config.epochs, (2 * n + s.data.n_test + s.data.n_val) * config.epochs, flops, config.epochs * -(-n // config.batch_size))
    return Unit(f"{tag}-seed{seed}", ("vae", data, s.data, s.annotator, config, seed), f"the labelling VAE, {tag}, seed {seed}", work)


def train_vae(splits: Splits, s: Settings, annotator: Annotator, judge: Annotator, tag: str, seed: int, config: LabellingConfig, data: str,
              *, device: torch.device, records: Records, keep_centres: tuple[int, ...] = ()) -> dict:
    """:func:`lib.cluster_labelling.train_labelling_vae` as a unit: its history, the labels it spent
    and the annotated centres of ``keep_centres``."""
    def compute(checkpoint: Checkpoint) -> dict:
        out = train_labelling_vae(config, splits.train, splits.val, splits.test, annotator, judge, seed=seed, device=device,
                                  checkpoint=checkpoint, keep_centres=keep_centres)
        return {"history": out["history"], "labels_spent": out["labels_spent"], "centres": out["centres"], "resumed": out["resumed_at_epoch"] > 0}

    return records.run(vae_unit(s, tag, seed, config, data), compute)


def diminishing_returns(accuracy_by_z: dict[int, float], z_low: int, z_mid: int, z_high: int) -> float:
    """Fig. 5's "not in the same proportion", for one seed: the accuracy gained per doubling of z_dim
    from ``z_low`` to ``z_mid``, minus that gained per doubling from ``z_mid`` to ``z_high`` (> 0:
    diminishing returns beyond ``z_mid``)."""
    if not z_low < z_mid < z_high:
        raise ValueError(f"need z_low < z_mid < z_high, got {z_low}, {z_mid}, {z_high}")
    a = accuracy_by_z
    return (a[z_mid] - a[z_low]) / math.log2(z_mid / z_low) - (a[z_high] - a[z_mid]) / math.log2(z_high / z_mid)


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


def alone_unit(s: Settings, seed: int, n_labels: int, data: str) -> Unit:
    config = s.method
    return Unit(f"labels-alone-seed{seed}", ("alone", data, s.data, s.annotator, config, n_labels, seed),
                f"a classifier on {n_labels or 'as many as the method spent'} random labels alone, seed {seed}",
                Work(config.batch_size * supervised_steps(config, s.data.n_train), s.data.n_test, 0.0, supervised_steps(config, s.data.n_train)))


def labels_alone(splits: Splits, s: Settings, annotator: Annotator, n_labels: int, data: str, *, seed: int, device: torch.device,
                 records: Records) -> dict:
    """:func:`train_on_labels_alone` as a unit."""
    return records.run(alone_unit(s, seed, n_labels, data),
                       lambda checkpoint: train_on_labels_alone(splits, annotator, s.method, n_labels, seed=seed, device=device))


def random_config(s: Settings, labels: tuple[int, ...]) -> LabellingConfig:
    """The random-image control labelling ``labels[r]`` new images after the r-th labelling epoch (as
    many an epoch as the arm it controls spent), for the same number of epochs."""
    return replace(s.method, label_source="random", random_labels=tuple(labels))


def rounds_spent(record: dict) -> tuple[int, ...]:
    """The labels a training of the method spent in each round that trained an epoch, in order."""
    return tuple(r["labels_given"] for r in record["history"] if r.get("used_for_training"))


def arm_config(s: Settings, k: int) -> LabellingConfig:
    """The method with k fixed (k > 0), or with k by the elbow (k = 0)."""
    return replace(s.method, fixed_k=k) if k else s.method


def arm_tag(k: int) -> str:
    return f"budget{k}" if k else "semi"


def control_tag(k: int) -> str:
    return f"random{k}" if k else "random"


def arms(s: Settings) -> list[int]:
    """The labelled arms, as their fixed k (0: the elbow), in the chapter's order."""
    return [0, *s.sweeps.budget_ks]


def controlled(s: Settings) -> list[int]:
    """The arms trained beside a random-image control: every fixed k, and the elbow arm when it is the judged one."""
    return [k for k in arms(s) if k or s.sweeps.paper_k == 0]


def beta_tags(s: Settings) -> tuple[str, str]:
    b = f"{s.sweeps.beta_control:g}".replace(".", "p")
    return f"beta{b}-{arm_tag(s.sweeps.paper_k)}", f"beta{b}-plain-z{s.method.z_dim}"


def plan(s: Settings, records: Records) -> list[Unit]:
    """Every unit the chapter runs, in its order. The baselines that label as many images as a
    training of the method spent are exact once that training's record exists; before, they are
    listed with no labels (and as to do)."""
    data = locate("mnist")
    if data is None:
        raise DataError("MNIST is in no data root: the plan needs its files (see data/README.md)")

    def spent(k: int, seed: int) -> tuple[int, ...]:
        path = records.path(vae_unit(s, arm_tag(k), seed, arm_config(s, k), data))
        return rounds_spent(torch.load(path, weights_only=True)) if path.is_file() else ()

    seeds, paper = s.run.seeds, s.sweeps.paper_k
    units = [reader_unit(s, role, data) for role in READERS]
    units += [vae_unit(s, arm_tag(k), seed, arm_config(s, k), data) for k in arms(s) for seed in seeds]
    units += [vae_unit(s, control_tag(k), seed, random_config(s, spent(k, seed)), data) for k in controlled(s) for seed in seeds]
    z_dims = [*s.sweeps.z_dims, *([s.method.z_dim] if s.method.z_dim not in s.sweeps.z_dims else [])]
    units += [vae_unit(s, f"plain-z{z}", seed, replace(s.method, z_dim=z, gamma=0.0), data) for z in z_dims for seed in seeds]
    units += [alone_unit(s, seed, sum(spent(paper, seed)), data) for seed in seeds]
    if s.sweeps.oracle:
        units += [vae_unit(s, "oracle", seed, replace(arm_config(s, paper), oracle=True), data) for seed in seeds]
    if s.sweeps.beta_control:
        semi_tag, plain_tag = beta_tags(s)
        b = s.sweeps.beta_control
        units += [vae_unit(s, semi_tag, seed, replace(arm_config(s, paper), beta=b), data) for seed in seeds]
        units += [vae_unit(s, plain_tag, seed, replace(s.method, beta=b, gamma=0.0), data) for seed in seeds]
    return units


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
