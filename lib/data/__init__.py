"""Datasets, verified against ``data/manifest.tsv``; splits; in-memory batches."""

from .augment import random_crop_flip
from .batching import batches, to_unit
from .loaders import (
    LAYOUTS,
    Dataset,
    Split,
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_mnist,
    load_tiny_imagenet_animals,
    locate,
)
from .manifest import DATA_ENV, DataError, DataUnavailable, network_timeout
from .splits import per_class_subset, select_classes, stratified_split, take

__all__ = [
    "DATA_ENV",
    "LAYOUTS",
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
    "locate",
    "network_timeout",
    "per_class_subset",
    "random_crop_flip",
    "select_classes",
    "stratified_split",
    "take",
    "to_unit",
]
