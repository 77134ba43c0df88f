"""Chapter 1's experiment: a straight classifier, its embeddings, a 4th class, and the clock.

One call of :func:`run_extension` is the paper's whole procedure for one dataset and one seed:

1. train the straight classifier (Fig. 3) on the ``classes``;
2. freeze its trunk and train the 64-d embedding head with triplets (Fig. 4), then the classic
   classifiers on the embeddings (Table 2, "3-class model");
3. add ``added_class``: train the head further on all four classes, re-embed, retrain the
   classic classifiers (Table 2, "4-class model");

and, for the time comparison of Eqs. (6)-(7), a new 4-class straight classifier from scratch.
Every step's wall time is measured. Labels: the ``classes`` are ``0..K-1`` in the order given,
the added class is ``K``.
"""

from __future__ import annotations

import copy
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
    Dataset,
    Split,
    load_fashion_mnist,
    load_mnist,
    per_class_subset,
    select_classes,
    take,
)
from .evaluation import accuracy
from .metric_learning import HeadSchedule, embed, fit_embedding_head
from .models import EmbeddingNet, PyramidConfig, StraightClassifier
from .similarity_search import VectorIndex, precision_at_k
from .training import Checkpoint, fit_classifier, predict, seed_everything

DATASETS = {"mnist": load_mnist, "fashion-mnist": load_fashion_mnist}
NUM_CLASSES = 10


def check_parameters(p: dict) -> None:
    """Range checks for chapter 1's parameters; raises ValueError naming the parameter and the fix."""
    unknown = [d for d in p["datasets"] if d not in DATASETS]
    if unknown or not p["datasets"] or len(set(p["datasets"])) != len(p["datasets"]):
        raise ValueError(f"datasets {p['datasets']} must be distinct names among {sorted(DATASETS)}")
    check_classes(p["classes"], p["added_class"])
    for name in ("train_per_class", "test_per_class", "mnist_epochs", "fashion_epochs", "batch_size", "embedding_dim",
                 "batch_class_repeats", "max_head_epochs", "knn_k", "search_k", "fpn_channels", "hidden", "input_size"):
        if p[name] < 1:
            raise ValueError(f"{name}={p[name]} must be at least 1")
    if p["train_per_class"] < max(2, p["knn_k"], p["search_k"]):
        raise ValueError(f"train_per_class={p['train_per_class']} must be at least knn_k, search_k and 2")
    if p["lr"] <= 0 or p["head_lr"] <= 0 or p["min_lr"] <= 0:
        raise ValueError("lr, head_lr and min_lr must be positive")
    if p["input_size"] < 28:
        raise ValueError(f"input_size={p['input_size']} must be at least the images' 28 pixels (the paper resizes to 128)")
    if p["tsne_points"] < 0:
        raise ValueError(f"tsne_points={p['tsne_points']} must be 0 (no projection) or more")
    head_schedule(p)  # the schedule's own checks (factor, patience, margin, scale)
    pyramid_config(p, 2)  # the network's own checks (backbone name, sizes)


def check_classes(classes: list[int], added_class: int) -> None:
    """The starting classes and the added one: distinct labels 0..9, at least two to start with."""
    if len(classes) < 2:
        raise ValueError(f"classes {classes} must name at least 2 classes (the paper uses 3)")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes {classes} repeat a class; give each class once")
    bad = [c for c in [*classes, added_class] if not (isinstance(c, int) and 0 <= c < NUM_CLASSES)]
    if bad:
        raise ValueError(f"classes {bad} are unknown: MNIST and Fashion-MNIST have the labels 0..{NUM_CLASSES - 1}")
    if added_class in classes:
        raise ValueError(f"added_class={added_class} is already among classes {classes}; choose a class the first model has not seen")


def pyramid_config(p: dict, num_classes: int) -> PyramidConfig:
    return PyramidConfig(backbone=p["backbone"], in_channels=1, image_size=28, input_size=p["input_size"],
                         fpn_channels=p["fpn_channels"], hidden=p["hidden"], num_classes=num_classes)


def head_schedule(p: dict) -> HeadSchedule:
    return HeadSchedule(batch_class_repeats=p["batch_class_repeats"], scale=p["similarity_scale"], margin=p["margin"],
                        lr=p["head_lr"], factor=p["lr_factor"], patience=p["lr_patience"], min_lr=p["min_lr"],
                        max_epochs=p["max_head_epochs"])


def classic_classifiers(seed: int, knn_k: int) -> dict:
    """Table 2's rows: the paper's two (kNN, random forest) and the usual others, scikit-learn defaults."""
    return {
        "k-nearest neighbours": KNeighborsClassifier(n_neighbors=knn_k),
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


def make_splits(dataset: Dataset, classes: list[int], added_class: int, train_per_class: int, test_per_class: int, seed: int) -> ExtensionSplits:
    """Seeded per-class subsets of the dataset's own train and test sets, relabelled."""
    check_classes(classes, added_class)
    order = [*classes, added_class]
    train, test = select_classes(dataset.train, order), select_classes(dataset.test, order)
    return ExtensionSplits(take(train, per_class_subset(train.labels, train_per_class, seed)),
                           take(test, per_class_subset(test.labels, test_per_class, seed)))


@dataclass
class ExtensionRun:
    """Everything one dataset and seed produced: accuracies, times, embeddings, search results."""

    accuracy: dict = field(default_factory=dict)  # name -> test accuracy
    seconds: dict = field(default_factory=dict)  # step -> wall time
    head_reports: dict = field(default_factory=dict)  # "3-class" / "4-class" -> HeadReport
    straight_images_per_s: float = 0.0
    embeddings: dict = field(default_factory=dict)  # "3-class" / "4-class" -> (train, test) unit vectors
    search: dict = field(default_factory=dict)  # precision@k per index and query set
    neighbours: np.ndarray | None = None  # training-set rows of the search grid's neighbours, extended index
    query_ids: np.ndarray | None = None
    resumed: int = 0  # trainings continued from a checkpoint
    trainings: int = 0


def run_extension(splits: ExtensionSplits, p: dict, *, epochs: int, seed: int, device: torch.device,
                  checkpoints: Path | None, tag: str, index_dir: Path | None = None) -> ExtensionRun:
    """The paper's three steps and the from-scratch 4-class network for one dataset and seed."""
    run, k_old = ExtensionRun(), splits.num_old
    train_old, test_old = splits.old(splits.train), splits.old(splits.test)
    is_new_train, is_new_test = splits.train.labels == k_old, splits.test.labels == k_old
    settings = {key: p[key] for key in ("classes", "added_class", "train_per_class", "test_per_class", "backbone", "input_size",
                                        "fpn_channels", "hidden", "lr", "batch_size", "embedding_dim")}
    fit = dict(epochs=epochs, lr=p["lr"], batch_size=p["batch_size"], seed=seed, device=device, optimiser="nadam",
               amp=p["amp"], channels_last=p["channels_last"])

    def straight(num_classes: int, train: Split, name: str):
        seed_everything(seed)  # the initial weights too
        model = StraightClassifier(pyramid_config(p, num_classes))
        ckpt = Checkpoint(checkpoints, f"{tag}-{name}-seed{seed}", {**settings, "epochs": epochs, "num_classes": num_classes})
        report = fit_classifier(model, train, checkpoint=ckpt, desc=f"{tag} {name} network", **fit)
        run.resumed, run.trainings = run.resumed + report.resumed, run.trainings + 1
        return model, report

    # Step 1: the straight 3-class classifier.
    straight3, report = straight(k_old, train_old, "straight3")
    run.seconds["straight 3-class training"] = report.seconds
    run.straight_images_per_s = report.images_per_s
    run.accuracy["straight 3-class"] = accuracy(predict(straight3, test_old.images, amp=p["amp"], channels_last=p["channels_last"]), test_old.labels)

    # Step 2: the frozen trunk's features, the triplet-trained head, the classic classifiers.
    net = EmbeddingNet(straight3.trunk, p["embedding_dim"]).to(device)
    feats = dict(batch_size=512, amp=p["amp"], channels_last=p["channels_last"], to_cpu=False)  # features stay on the device
    started = time.perf_counter()
    train_f_old = predict(net.trunk, splits.train.images[~is_new_train], **feats)
    run.seconds["trunk features, starting classes"] = time.perf_counter() - started
    started = time.perf_counter()
    train_f_new = predict(net.trunk, splits.train.images[is_new_train], **feats)
    run.seconds["trunk features, added class"] = time.perf_counter() - started
    train_f = torch.empty(len(splits.train.labels), train_f_old.shape[1], device=device)
    train_f[~is_new_train.to(device)], train_f[is_new_train.to(device)] = train_f_old, train_f_new
    started = time.perf_counter()
    test_f = predict(net.trunk, splits.test.images, **feats)
    run.seconds["trunk features, test set"] = time.perf_counter() - started
    schedule = head_schedule(p)
    head_settings = {**settings, "epochs": epochs, **schedule.__dict__}
    seed_everything(seed)
    net.head.reset_parameters()  # the head's initial weights from the seed
    report3 = fit_embedding_head(net.head, train_f[~is_new_train.to(device)], train_old.labels, schedule, seed=seed,
                                 checkpoint=Checkpoint(checkpoints, f"{tag}-head3-seed{seed}", head_settings), desc=f"{tag} 3-class head")
    run.head_reports["3-class"], run.seconds["embedding head, 3 classes"] = report3, report3.seconds
    run.resumed, run.trainings = run.resumed + report3.resumed, run.trainings + 1
    emb3_train, emb3_test = embed(net.head, train_f), embed(net.head, test_f)
    run.embeddings["3-class"] = (emb3_train, emb3_test)
    old_tr, old_te = ~is_new_train, ~is_new_test
    classic3 = fit_classic(classic_classifiers(seed, p["knn_k"]), emb3_train[old_tr], splits.train.labels[old_tr], emb3_test[old_te], splits.test.labels[old_te])
    for name, r in classic3.items():
        run.accuracy[f"{name}, 3-class model"] = r["accuracy"]

    # Beyond the paper: the added class embedded by the 3-class head, no further training.
    no_further = fit_classic({"k-nearest neighbours": KNeighborsClassifier(n_neighbors=p["knn_k"]), "nearest class mean": NearestCentroid()},
                             emb3_train, splits.train.labels, emb3_test, splits.test.labels)
    for name, r in no_further.items():
        run.accuracy[f"{name}, no further training"] = r["accuracy"]
        run.accuracy[f"{name}, no further training, added class"] = float((r["predicted"][is_new_test.numpy()] == k_old).mean())

    # Step 3: train the same head further on all four classes, re-embed, retrain the classic classifiers.
    head4 = copy.deepcopy(net.head)
    report4 = fit_embedding_head(head4, train_f, splits.train.labels, schedule, seed=seed,
                                 checkpoint=Checkpoint(checkpoints, f"{tag}-head4-seed{seed}", head_settings), desc=f"{tag} 4-class head")
    run.head_reports["4-class"], run.seconds["embedding head, further training"] = report4, report4.seconds
    run.resumed, run.trainings = run.resumed + report4.resumed, run.trainings + 1
    started = time.perf_counter()
    emb4_train = embed(head4, train_f)
    run.seconds["re-embedding the training set"] = time.perf_counter() - started
    emb4_test = embed(head4, test_f)
    run.embeddings["4-class"] = (emb4_train, emb4_test)
    classic4 = fit_classic(classic_classifiers(seed, p["knn_k"]), emb4_train, splits.train.labels, emb4_test, splits.test.labels)
    for name, r in classic4.items():
        run.accuracy[f"{name}, 4-class model"] = r["accuracy"]
    run.seconds["classic classifiers, retraining"] = sum(r["fit_s"] for r in classic4.values())
    knn_before = classic3["k-nearest neighbours"]["predicted"]
    knn_after = classic4["k-nearest neighbours"]["predicted"][old_te.numpy()]
    run.accuracy["k-nearest neighbours, starting classes, before"] = float((knn_before == test_old.labels.numpy()).mean())
    run.accuracy["k-nearest neighbours, starting classes, after"] = float((knn_after == test_old.labels.numpy()).mean())

    # Eqs. (6)-(7): the from-scratch alternative, a new 4-class straight classifier.
    straight4, report = straight(k_old + 1, splits.train, "straight4")
    run.seconds["straight 4-class training from scratch"] = report.seconds
    logits = predict(straight4, splits.test.images, amp=p["amp"], channels_last=p["channels_last"])
    run.accuracy["straight 4-class"] = accuracy(logits, splits.test.labels)
    run.accuracy["straight 4-class, starting classes"] = accuracy(logits[old_te], test_old.labels)
    run.seconds["embedding route, total"] = sum(run.seconds[s] for s in (
        "trunk features, added class", "embedding head, further training", "re-embedding the training set", "classic classifiers, retraining"))
    # Without the cache every triplet row of the further training would pass through the trunk again.
    per_image = sum(run.seconds[f"trunk features, {s}"] for s in ("starting classes", "added class", "test set")) / (len(train_f) + len(test_f))
    triplet_rows = 3 * len(splits.train.labels) * len(report4.losses)  # an epoch draws about N anchors, 3 rows each
    run.seconds["embedding route without the feature cache (estimate)"] = run.seconds["embedding route, total"] + triplet_rows * per_image

    # Step 6: similarity search in a saved, reloaded, extended index.
    run.search, run.query_ids, run.neighbours = similarity_search(splits, emb3_train, emb3_test, emb4_train, emb4_test, p["search_k"], index_dir, tag, seed)
    return run


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
