"""The JPEG-archive loaders (CIFAR-10's JPEG copy, Tiny-ImageNet animals), their decode cache and
``verify_layout``, on tiny fake archives in a private data root with a private manifest: decoded pixels
against Pillow's own decode, digests against hashlib, and corrupted, missing and stale files."""

import gzip
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from lib.data import DataError, load_cifar10, load_tiny_imagenet_animals, locate
from lib.data import loaders
from lib.data import manifest as manifest_module
from lib.data.loaders import CIFAR10_CLASSES, tiny_imagenet_classes
from lib.data.manifest import Entry, verify_layout


def jpeg(colour: tuple[int, int, int], size: int = 4, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour)[None, None] + rng.integers(-20, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def write_tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def pillow_decode(data: bytes) -> np.ndarray:
    """The reference: Pillow's decode of one JPEG, as (C, H, W) uint8."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A private data root, a private manifest and a private cache: nothing of the book's own data is read."""
    data = tmp_path / "data-root"
    data.mkdir()
    monkeypatch.setenv("BOOK_DATA_DIR", str(data))
    monkeypatch.setattr(manifest_module, "PROJECT_ROOT", tmp_path / "project")  # no fallback to the project's data/
    monkeypatch.setattr(loaders, "CACHE_DIR", tmp_path / "cache")
    manifest = tmp_path / "manifest.tsv"
    manifest.write_text("")
    real = manifest_module.read_manifest
    monkeypatch.setattr(manifest_module, "read_manifest", lambda path=manifest: real(path))
    monkeypatch.setattr(manifest_module, "_verified", {})  # no digest remembered from another test
    return data


def write_manifest(root, layout: str, files: list[str]) -> None:
    manifest = root.parent / "manifest.tsv"
    lines = [line for line in manifest.read_text().splitlines() if not line.startswith(layout + "\t")]
    lines += [f"{layout}\t{f}\tsha256\t{sha256(root / layout / f)}\tfile" for f in files]
    manifest.write_text("\n".join(lines) + "\n")


def cifar_members(seed: int) -> dict[str, dict[str, bytes]]:
    """Two train images (an airplane, a truck) and one test image (a cat), each a noisy flat colour."""
    return {"train.tar.gz": {"./airplane/0001.jpg": jpeg((200, 30, 30), seed=seed), "./truck/0002.jpg": jpeg((20, 20, 220), seed=seed + 1)},
            "test.tar.gz": {"./cat/0003.jpg": jpeg((30, 200, 30), seed=seed + 2)}}


def fake_cifar(root, seed: int = 0) -> dict[str, dict[str, bytes]]:
    folder = root / "cifar10-jpeg"
    folder.mkdir(exist_ok=True)
    (folder / "classes.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n")
    members = cifar_members(seed)
    for archive, content in members.items():
        write_tar(folder / archive, content)
    write_manifest(root, "cifar10-jpeg", ["classes.txt", "train.tar.gz", "test.tar.gz"])
    return members


def assert_decoded(split, members: dict[str, bytes]):
    """The split holds Pillow's decode of every member, in name order, labelled by its folder."""
    names = sorted(members)
    assert split.images.dtype == torch.uint8 and split.images.shape == (len(names), 3, 4, 4)
    for image, label, name in zip(split.images, split.labels.tolist(), names):
        assert np.array_equal(image.numpy(), pillow_decode(members[name]))
        assert CIFAR10_CLASSES[label] == name.split("/")[1]


def test_the_cifar10_jpeg_copy_loads_decoded_labelled_and_verified(root):
    members = fake_cifar(root)
    ds = load_cifar10()
    assert_decoded(ds.train, members["train.tar.gz"])
    assert_decoded(ds.test, members["test.tar.gz"])
    assert ds.train.labels.tolist() == [0, 9] and ds.test.labels.tolist() == [3]
    assert ds.provenance["lossy"] is True and ds.classes == CIFAR10_CLASSES
    folder = root / "cifar10-jpeg"
    assert ds.provenance["files"] == {str(folder / f): f"sha256:{sha256(folder / f)}" for f in ("classes.txt", "train.tar.gz", "test.tar.gz")}
    by_hand = hashlib.sha256("".join(sorted(f"sha256:{sha256(folder / f)}" for f in ("classes.txt", "train.tar.gz", "test.tar.gz"))).encode())
    assert ds.fingerprint == locate("cifar10") == by_hand.hexdigest()[:16]


def test_a_second_load_reads_the_cache_and_decodes_nothing(root, monkeypatch):
    members = fake_cifar(root)
    load_cifar10()
    assert len(list(loaders.CACHE_DIR.glob("*.pt"))) == 2  # one per archive

    def no_decoding(*args, **kwargs):
        raise AssertionError("the archive was opened although its cache is valid")

    monkeypatch.setattr(tarfile, "open", no_decoding)
    assert_decoded(load_cifar10().train, members["train.tar.gz"])


def test_a_corrupted_archive_is_refused_with_its_name_even_when_a_valid_cache_exists(root):
    fake_cifar(root)
    load_cifar10()  # a valid cache of the good archive now exists
    archive = root / "cifar10-jpeg" / "train.tar.gz"
    raw = bytearray(archive.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one byte changed
    archive.write_bytes(bytes(raw) + b"\0")  # (and one added: the file's size changes, so no earlier digest is reused)
    with pytest.raises(DataError) as err:
        load_cifar10()
    message = str(err.value)
    assert "train.tar.gz" in message and "does not match the manifest" in message and "BOOK_DATA_DIR" in message


def test_a_corrupted_archive_is_refused_on_the_first_load(root):
    fake_cifar(root)
    archive = root / "cifar10-jpeg" / "test.tar.gz"
    raw = bytearray(archive.read_bytes())
    raw[-5] ^= 0x01  # the same size, one bit changed
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"test\.tar\.gz does not match the manifest"):
        load_cifar10()
    assert not loaders.CACHE_DIR.exists()  # refused before anything was decoded


def test_a_missing_archive_is_refused_with_its_name(root):
    fake_cifar(root)
    (root / "cifar10-jpeg" / "test.tar.gz").unlink()
    with pytest.raises(DataError, match=r"missing data file .*cifar10-jpeg/test\.tar\.gz"):
        load_cifar10()


def test_a_cache_recorded_for_another_archive_digest_is_not_used(root):
    fake_cifar(root)
    load_cifar10()
    (cache,) = loaders.CACHE_DIR.glob("*train*.pt")
    stale = {"source_digest": "0" * 64, "images": torch.zeros(5, 3, 4, 4, dtype=torch.uint8), "labels": torch.zeros(5, dtype=torch.int64)}
    torch.save(stale, cache)  # where the cache of this archive lies, but made from another one
    members = cifar_members(0)
    assert_decoded(load_cifar10().train, members["train.tar.gz"])
    rebuilt = torch.load(cache, weights_only=True)
    assert rebuilt["source_digest"] == sha256(root / "cifar10-jpeg" / "train.tar.gz") and len(rebuilt["labels"]) == 2


def test_a_new_version_of_an_archive_is_decoded_not_read_from_the_old_ones_cache(root):
    fake_cifar(root, seed=0)
    old = load_cifar10()
    new_members = fake_cifar(root, seed=10)  # other images, a manifest that names them
    new = load_cifar10()
    assert_decoded(new.train, new_members["train.tar.gz"])
    assert not torch.equal(new.train.images, old.train.images)


def test_a_damaged_cache_file_is_rebuilt_not_trusted(root, capsys):
    members = fake_cifar(root)
    load_cifar10()
    (cache,) = loaders.CACHE_DIR.glob("*train*.pt")
    cache.write_bytes(cache.read_bytes()[:100])  # a truncated file
    assert_decoded(load_cifar10().train, members["train.tar.gz"])
    assert "unreadable" in capsys.readouterr().out
    assert torch.load(cache, weights_only=True)["source_digest"] == sha256(root / "cifar10-jpeg" / "train.tar.gz")


def test_an_archive_member_outside_the_known_classes_is_refused(root):
    fake_cifar(root)
    write_tar(root / "cifar10-jpeg" / "test.tar.gz", {"./unicorn/0001.jpg": jpeg((1, 2, 3))})
    write_manifest(root, "cifar10-jpeg", ["classes.txt", "train.tar.gz", "test.tar.gz"])
    with pytest.raises(DataError, match="unicorn"):
        load_cifar10()


WNIDS = [("n01", "goldfinch", "bird"), ("n02", "beagle", "dog"), ("n03", "frog", "animal")]


def fake_tiny_imagenet(root) -> dict[str, dict[str, bytes]]:
    folder = root / "tiny-imagenet-animals"
    folder.mkdir()
    (folder / "classes.tsv").write_text("wnid\tname\tsuperclass\n" + "".join("\t".join(r) + "\n" for r in WNIDS))
    members = {"train.tar.gz": {f"./{w}/{w}_{i}.JPEG": jpeg((40 * k, 200 - 40 * k, 90), seed=3 * k + i) for k, (w, _, _) in enumerate(WNIDS)
                                for i in range(2)},
               "val.tar.gz": {"./n03/v0.JPEG": jpeg((5, 5, 5), seed=9), "./n01/v1.JPEG": jpeg((250, 250, 0), seed=8)}}
    for archive, content in members.items():
        write_tar(folder / archive, content)
    write_manifest(root, "tiny-imagenet-animals", ["classes.tsv", "train.tar.gz", "val.tar.gz"])
    return members


def test_tiny_imagenet_animals_load_with_their_names_superclasses_and_folder_labels(root):
    members = fake_tiny_imagenet(root)
    ds = load_tiny_imagenet_animals()
    assert ds.classes == ["goldfinch", "beagle", "frog"] and ds.superclasses == ["bird", "dog", "animal"]
    assert tiny_imagenet_classes() == (ds.classes, ds.superclasses)
    for split, archive in ((ds.train, "train.tar.gz"), (ds.test, "val.tar.gz")):
        names = sorted(members[archive])
        assert split.labels.tolist() == [[w for w, _, _ in WNIDS].index(n.split("/")[1]) for n in names]
        for image, name in zip(split.images, names):
            assert np.array_equal(image.numpy(), pillow_decode(members[archive][name]))
    assert ds.test.labels.tolist() == [0, 2]  # ./n01/v1 sorts before ./n03/v0


def test_tiny_imagenet_refuses_a_corrupted_validation_archive_and_a_missing_class_list(root):
    fake_tiny_imagenet(root)
    archive = root / "tiny-imagenet-animals" / "val.tar.gz"
    archive.write_bytes(archive.read_bytes() + b"junk")
    with pytest.raises(DataError, match=r"val\.tar\.gz does not match the manifest"):
        load_tiny_imagenet_animals()
    (root / "tiny-imagenet-animals" / "classes.tsv").unlink()
    with pytest.raises(DataError, match=r"missing data file .*classes\.tsv"):
        load_tiny_imagenet_animals()


def test_verify_layout_checks_files_and_gzip_contents_against_hashlib(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "_verified", {})
    folder = tmp_path / "toy"
    folder.mkdir()
    (folder / "plain.bin").write_bytes(b"some bytes")
    content = b"the uncompressed content"
    (folder / "packed.gz").write_bytes(gzip.compress(content, compresslevel=9, mtime=0))
    entries = [Entry("toy", "plain.bin", "md5", hashlib.md5(b"some bytes").hexdigest(), "file"),
               Entry("toy", "packed.gz", "sha256", hashlib.sha256(content).hexdigest(), "content"),
               Entry("other", "x", "sha256", "0" * 64, "file")]
    checked = verify_layout(tmp_path, "toy", entries)
    assert checked == {str(folder / "plain.bin"): "md5:" + hashlib.md5(b"some bytes").hexdigest(),
                       str(folder / "packed.gz"): "sha256:" + hashlib.sha256(content).hexdigest()}
    (folder / "packed.gz").write_bytes(gzip.compress(content, compresslevel=1, mtime=12345))  # re-compressed: other bytes, same content
    assert verify_layout(tmp_path, "toy", entries) == checked
    (folder / "packed.gz").write_bytes(gzip.compress(content + b"!"))
    with pytest.raises(DataError, match=r"packed\.gz does not match the manifest: expected sha256"):
        verify_layout(tmp_path, "toy", entries)
    with pytest.raises(DataError, match="no entry for layout 'missing'"):
        verify_layout(tmp_path, "missing", entries)


def test_a_file_changed_in_place_with_its_size_and_time_kept_is_caught(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "_verified", {})
    folder = tmp_path / "toy"
    folder.mkdir()
    path = folder / "data.bin"
    path.write_bytes(b"good bytes")
    entries = [Entry("toy", "data.bin", "sha256", hashlib.sha256(b"good bytes").hexdigest(), "file")]
    verify_layout(tmp_path, "toy", entries)
    stat = path.stat()
    path.write_bytes(b"evil bytes")  # the same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # and the same time (a copy that keeps times, or one clock tick)
    with pytest.raises(DataError, match="does not match the manifest"):
        verify_layout(tmp_path, "toy", entries)
