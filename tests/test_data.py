"""The data layer: real loaders, the manifest check on corrupted and missing files, splits, batches."""

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from lib.data import (
    DataError,
    DataUnavailable,
    Split,
    batches,
    load_cifar10,
    load_fashion_mnist,
    load_tiny_imagenet_animals,
    per_class_subset,
    select_classes,
    stratified_split,
)
from lib.data import manifest as manifest_module
from lib.data.loaders import load_mnist


def test_mnist_loads_verified(mnist):
    assert mnist.train.images.shape == (60000, 1, 28, 28) and mnist.train.images.dtype == torch.uint8
    assert mnist.test.images.shape == (10000, 1, 28, 28)
    assert torch.equal(mnist.train.labels.unique(), torch.arange(10))
    assert len(mnist.provenance["files"]) == 4
    assert all(d.startswith("sha256:") for d in mnist.provenance["files"].values())


def test_fashion_mnist_loads():
    ds = load_fashion_mnist()
    assert ds.train.images.shape == (60000, 1, 28, 28)
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"


def test_cifar10_loads_and_says_which_copy():
    ds = load_cifar10()
    assert ds.train.images.shape == (50000, 3, 32, 32) and ds.test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(ds.train.labels).tolist() == [5000] * 10
    assert ds.provenance["lossy"] == ("jpeg" in ds.provenance["copy"].lower())
    if ds.provenance["lossy"]:  # the shared copy's documented channel means
        means = ds.train.images.float().mean(dim=(0, 2, 3))
        torch.testing.assert_close(means, torch.tensor([125.27, 122.93, 113.86]), atol=0.05, rtol=0)


def test_tiny_imagenet_animals_loads_with_superclasses():
    ds = load_tiny_imagenet_animals()
    assert len(ds.classes) == 59 and len(ds.superclasses) == 59
    assert ds.superclasses.count("bird") == 4 and ds.superclasses.count("dog") == 6
    assert ds.train.images.shape == (59 * 500, 3, 64, 64) and ds.test.images.shape == (59 * 50, 3, 64, 64)


@pytest.fixture
def private_mnist(tmp_path, monkeypatch, mnist):
    """A private copy of the MNIST files, made the only data root."""
    source = next(iter(mnist.provenance["files"])).rsplit("/", 1)[0]
    shutil.copytree(source, tmp_path / "mnist")
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    return tmp_path / "mnist"


def test_a_corrupted_file_is_refused_with_its_name_and_checksum(private_mnist):
    target = private_mnist / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # one label changed: still a valid file, wrong content
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as err:
        load_mnist()
    message = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in message
    assert "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5" in message
    assert "BOOK_DATA_DIR" in message


def test_a_truncated_file_is_refused(private_mnist):
    target = private_mnist / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:1000])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist()


def test_a_missing_file_is_refused(private_mnist):
    (private_mnist / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing data file .*t10k-labels-idx1-ubyte.gz"):
        load_mnist()


def test_a_bad_data_dir_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="is not a folder"):
        manifest_module.data_roots()


def test_stratified_split_is_exact_disjoint_stratified_and_seeded():
    labels = torch.arange(1000) % 4  # 250 per class
    a, b, rest = stratified_split(labels, [400, 100], seed=3)
    assert (len(a), len(b), len(rest)) == (400, 100, 500)
    assert len(set(a.tolist()) | set(b.tolist()) | set(rest.tolist())) == 1000
    assert torch.bincount(labels[a]).tolist() == [100] * 4
    assert torch.bincount(labels[b]).tolist() == [25] * 4
    again = stratified_split(labels, [400, 100], seed=3)
    assert torch.equal(a, again[0]) and torch.equal(b, again[1])
    assert not torch.equal(a, stratified_split(labels, [400, 100], seed=4)[0])


def test_stratified_split_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="sum to at most"):
        stratified_split(torch.zeros(10, dtype=torch.long), [8, 5], seed=0)


def test_select_classes_relabels_in_the_given_order():
    split = Split(torch.arange(12).view(12, 1, 1, 1).to(torch.uint8), torch.tensor([0, 1, 2, 3] * 3))
    sub = select_classes(split, [3, 1])
    assert sub.labels.tolist() == [1, 0] * 3  # images keep their order: 1, 3, 1, 3, ... relabelled 1 -> 1, 3 -> 0
    assert all((img.item() % 4 == 3) == (lab == 0) for img, lab in zip(sub.images.flatten(), sub.labels.tolist()))
    with pytest.raises(ValueError, match="repeat"):
        select_classes(split, [1, 1])
    with pytest.raises(ValueError, match="do not occur"):
        select_classes(split, [7])


def test_per_class_subset():
    labels = torch.arange(100) % 5
    idx = per_class_subset(labels, 3, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [3] * 5


def test_batches_cover_every_image_once_and_shuffle_by_seed():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1)
    ids = torch.arange(10)
    seen = torch.cat([i for _, i in batches(images, ids, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    again = torch.cat([i for _, i in batches(images, ids, batch_size=3, shuffle=True, generator=torch.Generator().manual_seed(0))])
    assert torch.equal(seen, again)
    x, i = next(iter(batches(images, ids, batch_size=4, shuffle=False)))
    assert x.dtype == torch.float32 and torch.allclose(x.flatten(), i.float() / 255)


def test_a_failed_download_says_so_and_leaves_nothing_behind(monkeypatch, tmp_path):
    import torchvision

    from lib.data import loaders

    def offline(root, train, download):
        (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)  # a partial download
        raise OSError("Name or service not known")

    monkeypatch.setattr(loaders, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="could not download it .*Name or service not known"):
        loaders._download("MNIST", ["MNIST/raw"])
    assert not (tmp_path / "data" / "MNIST").exists()


def test_stratified_split_may_use_every_image():
    labels = torch.arange(20) % 2
    parts = stratified_split(labels, [10, 10], seed=0)
    assert len(parts) == 2 and sorted(torch.cat(parts).tolist()) == list(range(20))


def test_official_cifar_batches_are_preferred_and_checked_by_md5(monkeypatch, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / name).write_bytes(b"not the official batch")
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="data_batch_1 does not match the manifest: expected md5 c99cafc152244af753f735de768cd75f"):
        load_cifar10()  # a bad official copy is refused, never skipped in favour of the JPEG copy


def test_cifar100_is_checked_by_torchvisions_md5s_and_offline_says_how_to_get_it(monkeypatch, tmp_path):
    import torchvision

    from lib.data import load_cifar100, loaders

    folder = tmp_path / "copies" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name in ["meta", "train", "test"]:
        (folder / name).write_bytes(b"not the official file")
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "copies"))
    with pytest.raises(DataError, match="does not match the manifest: expected md5") as damaged:
        load_cifar100()
    assert not isinstance(damaged.value, DataUnavailable)  # a damaged copy must never be skipped as "unavailable"

    def offline(root, train, download):
        raise OSError("Name or service not known")

    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("BOOK_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(loaders, "PROJECT_ROOT", tmp_path / "project")
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", offline)
    with pytest.raises(DataUnavailable, match="CIFAR100 was not found in any data root and torchvision could not download it"):
        load_cifar100()
