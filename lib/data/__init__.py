"""Datasets, verified against ``data/manifest.tsv``; splits; in-memory batches."""

from .augment import random_crop_flip
from .batching import batches, to_unit
from .loaders import (
    Dataset,
    Split,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_tiny_imagenet_animals,
)
from .manifest import DATA_ENV, DataError, DataUnavailable
from .splits import per_class_subset, select_classes, stratified_split, take

__all__ = [
    "DATA_ENV",
    "DataError",
    "DataUnavailable",
    "Dataset",
    "Split",
    "batches",
    "load_cifar10",
    "load_cifar100",
    "load_fashion_mnist",
    "load_mnist",
    "load_tiny_imagenet_animals",
    "per_class_subset",
    "random_crop_flip",
    "select_classes",
    "stratified_split",
    "take",
    "to_unit",
]
