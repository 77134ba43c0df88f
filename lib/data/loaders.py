"""The four datasets of the book, as uint8 image tensors with integer labels.

Each loader returns a :class:`Dataset`: ``train`` and ``test`` splits of
``images`` (uint8, N x C x H x W) and ``labels`` (int64, N), the class
names, and a ``provenance`` record (which copy was read, its checksums,
whether it is lossy) that goes into every run card. JPEG datasets are
decoded once and cached under ``data/cache/`` keyed by the archive's digest.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from tqdm import tqdm

from .manifest import HOW_TO_GET, PROJECT_ROOT, DataError, DataUnavailable, find_layout, fingerprint, network_timeout, verify_layout

CACHE_DIR = PROJECT_ROOT / "data" / "cache"


class Split(NamedTuple):
    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    classes: list[str]
    provenance: dict = field(default_factory=dict)
    superclasses: list[str] | None = None  # superclass of each class (Tiny-ImageNet animals)

    @property
    def fingerprint(self) -> str:
        """The digest of the files it was read from (:func:`lib.data.manifest.fingerprint`)."""
        return fingerprint(self.provenance.get("files", {}))


# The folders each dataset is looked for in, in order (see data/README.md); a plan reads them without decoding.
LAYOUTS = {
    "mnist": ["mnist", "MNIST/raw"],
    "fashion-mnist": ["fashion-mnist", "FashionMNIST/raw"],
    "cifar10": ["cifar-10-batches-py", "cifar10-jpeg"],
    "cifar100": ["cifar-100-python"],
    "tiny-imagenet-animals": ["tiny-imagenet-animals"],
}


def locate(name: str) -> str | None:
    """The fingerprint of the copy a loader would read for dataset ``name`` (a key of :data:`LAYOUTS`),
    checked against the manifest but not decoded; None when no data root has it."""
    for layout in LAYOUTS[name]:
        found = find_layout([layout])
        if found is not None:
            return fingerprint(verify_layout(*found))
    return None


# ---------------------------------------------------------------- IDX (MNIST)


def read_idx(path: Path) -> np.ndarray:
    """Read a gzip-compressed IDX file (LeCun's format) into a numpy array."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or dtype_code != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file. {HOW_TO_GET}")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _idx_dataset(name: str, layouts: list[str], tv_class: str, classes: list[str]) -> Dataset:
    found = find_layout(layouts) or _download(tv_class, layouts)
    root, layout = found
    checksums = verify_layout(root, layout)
    folder = root / layout

    def split(prefix: str) -> Split:
        images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz")
        return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))

    provenance = {"dataset": name, "copy": str(folder), "format": "IDX (gzip)", "lossy": False, "files": checksums}
    return Dataset(name, split("train"), split("t10k"), classes, provenance)


def load_mnist() -> Dataset:
    """MNIST (LeCun, Cortes, Burges): 60,000 train / 10,000 test digits, 28 x 28 grey."""
    return _idx_dataset("MNIST", LAYOUTS["mnist"], "MNIST", [str(d) for d in range(10)])


FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_fashion_mnist() -> Dataset:
    """Fashion-MNIST (Xiao, Rasul, Vollgraf 2017): 60,000 / 10,000 garments, 28 x 28 grey."""
    return _idx_dataset("Fashion-MNIST", LAYOUTS["fashion-mnist"], "FashionMNIST", FASHION_CLASSES)


# ---------------------------------------------------------------- CIFAR-10

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def load_cifar10() -> Dataset:
    """CIFAR-10: the official python batches when present, else the lossy JPEG copy.

    The JPEG copy (quality 75, 4:2:0 chroma, about 31 dB PSNR) is a stand-in
    for machines that cannot download the original; ``provenance['lossy']``
    says which one a run used.
    """
    found = find_layout(["cifar-10-batches-py"]) or find_layout(["cifar10-jpeg"])
    if found is None:
        found = _download("CIFAR10", ["cifar-10-batches-py"])
    root, layout = found
    checksums = verify_layout(root, layout)
    if layout == "cifar-10-batches-py":

        def batch(names: list[str]) -> Split:
            xs, ys = [], []
            for n in names:
                with open(root / layout / n, "rb") as f:
                    d = pickle.load(f, encoding="latin1")
                xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(d["labels"], dtype=np.int64))
            return Split(torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)))

        train, test = batch([f"data_batch_{i}" for i in range(1, 6)]), batch(["test_batch"])
        fmt, lossy = "official python batches", False
    else:
        classes = (root / layout / "classes.txt").read_text().split()
        if classes != CIFAR10_CLASSES:
            raise DataError(f"{root / layout / 'classes.txt'} lists {classes}, expected {CIFAR10_CLASSES}")
        train = _jpeg_tar(root / layout / "train.tar.gz", checksums, classes)
        test = _jpeg_tar(root / layout / "test.tar.gz", checksums, classes)
        fmt, lossy = "JPEG re-encoding (quality 75), decoded with Pillow", True
    provenance = {"dataset": "CIFAR-10", "copy": str(root / layout), "format": fmt, "lossy": lossy, "files": checksums}
    return Dataset("CIFAR-10", train, test, list(CIFAR10_CLASSES), provenance)


def load_cifar100() -> Dataset:
    """CIFAR-100 (Krizhevsky, 2009), 100 fine classes: the official python files, or torchvision's download.

    No offline copy exists on the machines this book is built on; there it raises
    :class:`DataUnavailable`, and chapters mark their CIFAR-100 claims as not run.
    """
    found = find_layout(["cifar-100-python"]) or _download("CIFAR100", ["cifar-100-python"])
    root, layout = found
    checksums = verify_layout(root, layout)

    def part(name: str) -> Split:
        with open(root / layout / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        images = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        return Split(torch.from_numpy(images), torch.from_numpy(np.asarray(d["fine_labels"], dtype=np.int64)))

    with open(root / layout / "meta", "rb") as f:
        classes = list(pickle.load(f, encoding="latin1")["fine_label_names"])
    provenance = {"dataset": "CIFAR-100", "copy": str(root / layout), "format": "official python files", "lossy": False, "files": checksums}
    return Dataset("CIFAR-100", part("train"), part("test"), classes, provenance)


# ---------------------------------------------------------------- Tiny-ImageNet animals


def tiny_imagenet_classes() -> tuple[list[str], list[str]]:
    """The animal classes' names and super-classes, from the copy a loader would read (images not decoded)."""
    found = find_layout(LAYOUTS["tiny-imagenet-animals"])
    if found is None:
        raise DataError("Tiny-ImageNet animals not found in any data root (torchvision has no downloader for it). " + HOW_TO_GET)
    rows = [line.split("\t") for line in (found[0] / found[1] / "classes.tsv").read_text().splitlines()[1:] if line]
    return [r[1] for r in rows], [r[2] for r in rows]


def load_tiny_imagenet_animals() -> Dataset:
    """The 59 animal classes of Tiny-ImageNet-200, 64 x 64 RGB, with WordNet super-classes.

    ``train``: 500 images per class; ``test``: Tiny-ImageNet's 50 validation
    images per class. ``superclasses[c]`` is ``bird``, ``dog`` or ``animal``.
    """
    found = find_layout(["tiny-imagenet-animals"])
    if found is None:
        raise DataError(
            "Tiny-ImageNet animals not found in any data root (torchvision has no downloader for it). " + HOW_TO_GET
        )
    root, layout = found
    checksums = verify_layout(root, layout)
    rows = [line.split("\t") for line in (root / layout / "classes.tsv").read_text().splitlines()[1:] if line]
    wnids, names, supers = zip(*rows)
    train = _jpeg_tar(root / layout / "train.tar.gz", checksums, list(wnids))
    test = _jpeg_tar(root / layout / "val.tar.gz", checksums, list(wnids))
    provenance = {"dataset": "Tiny-ImageNet animals", "copy": str(root / layout), "format": "original JPEG", "lossy": False, "files": checksums}
    return Dataset("Tiny-ImageNet animals", train, test, list(names), provenance, superclasses=list(supers))


# ---------------------------------------------------------------- shared helpers


def _jpeg_tar(path: Path, checksums: dict[str, str], folders: list[str]) -> Split:
    """Decode ``./<folder>/<file>`` JPEG members once; later calls read the cache."""
    from PIL import Image

    digest = checksums[str(path)].split(":")[1]
    cache = CACHE_DIR / f"{path.parent.name}-{path.name.split('.')[0]}-{digest[:16]}.pt"
    if cache.is_file():
        try:
            cached = torch.load(cache, weights_only=True)
            if cached["source_digest"] == digest:
                return Split(cached["images"], cached["labels"])
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            print(f"cache {cache} is unreadable ({err}); decoding {path} again")
    index = {f: i for i, f in enumerate(folders)}
    images, labels = [], []
    with tarfile.open(path, "r:gz") as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        for m in tqdm(members, desc=f"decoding {path.name}", leave=False):
            folder = Path(m.name).parent.name
            if folder not in index:
                raise DataError(f"{path} holds {m.name}, whose folder {folder!r} is not a known class")
            img = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
            images.append(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1))
            labels.append(index[folder])
    split = Split(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save({"source_digest": digest, "images": split.images, "labels": split.labels}, tmp)
    tmp.replace(cache)
    return split


def _download(tv_class: str, layouts: list[str]) -> tuple[Path, str]:
    """torchvision's ``download=True`` into ``data/``; a clear error when offline."""
    import shutil

    import torchvision

    target = PROJECT_ROOT / "data"
    created = [target / layout.split("/")[0] for layout in layouts if not (target / layout.split("/")[0]).exists()]
    try:
        with network_timeout():
            getattr(torchvision.datasets, tv_class)(root=str(target), train=True, download=True)
            getattr(torchvision.datasets, tv_class)(root=str(target), train=False, download=True)
    except Exception as err:  # no network, a proxy, a full disk: say which, and leave no partial copy behind
        for folder in created:
            shutil.rmtree(folder, ignore_errors=True)
        raise DataUnavailable(
            f"{tv_class} was not found in any data root and torchvision could not download it ({err}). {HOW_TO_GET}"
        ) from err
    found = find_layout(layouts)
    if found is None:
        raise DataError(f"torchvision downloaded {tv_class} but none of {layouts} appeared under {target}")
    return found
