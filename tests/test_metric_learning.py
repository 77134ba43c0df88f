"""Triplet batches, the embedding head's training (its stopping rule and its resume) and embed()."""

import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier

from lib.metric_learning import (
    HeadSchedule,
    class_members,
    embed,
    fit_embedding_head,
    sample_triplets,
)


def blobs(n_per_class=40, num_classes=3, dim=12, seed=0):
    """Separable Gaussian clusters: an easy stand-in for a trunk's features."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(num_classes, dim, generator=g)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    return centres[labels] + torch.randn(len(labels), dim, generator=g), labels


def test_triplets_are_built_as_the_paper_says():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    a, p, n = sample_triplets(class_members(labels), repeats=15, generator=torch.Generator().manual_seed(0))
    assert len(a) == len(p) == len(n) == 3 * 15
    assert torch.equal(torch.bincount(labels[a]), torch.tensor([15, 15, 15]))  # every class anchors 15 times
    assert torch.equal(labels[p], labels[a]) and (p != a).all()  # a positive is another image of the class
    assert (labels[n] != labels[a]).all()  # a negative is of another class
    assert set(labels[n][labels[a] == 0].tolist()) == {1, 2}  # ... drawn from all of them


def test_triplet_sampling_is_seeded():
    members = class_members(torch.tensor([0, 1, 0, 1, 2, 2]))

    def draw(seed):
        return sample_triplets(members, 4, torch.Generator().manual_seed(seed))

    assert all(torch.equal(x, y) for x, y in zip(draw(1), draw(1)))
    assert not all(torch.equal(x, y) for x, y in zip(draw(1), draw(2)))


def test_a_class_with_one_image_is_refused():
    with pytest.raises(ValueError, match="2 images per class"):
        class_members(torch.tensor([0, 0, 1]))


def test_the_schedule_checks_its_values():
    with pytest.raises(ValueError, match="factor"):
        HeadSchedule(factor=1.5)
    with pytest.raises(ValueError, match="batch_class_repeats"):
        HeadSchedule(batch_class_repeats=0)


def test_the_head_learns_separable_classes_and_stops_by_the_learning_rate():
    x, y = blobs()
    head = torch.nn.Linear(x.shape[1], 8)
    report = fit_embedding_head(head, x, y, HeadSchedule(patience=1, max_epochs=60), seed=0)
    assert report.stopped.startswith("learning rate below") and report.lrs[-1] < 1e-3
    assert report.losses[-1] < report.losses[0]
    e = embed(head, x)
    assert torch.allclose(e.norm(dim=1), torch.ones(len(e)), atol=1e-5)  # unit vectors
    xt, yt = blobs(seed=0)[0] + 0.1 * torch.randn_like(x), y
    knn = KNeighborsClassifier(3).fit(e.numpy(), y.numpy())
    assert knn.score(embed(head, xt).numpy(), yt.numpy()) > 0.95


def test_the_rate_is_cut_after_patience_epochs_without_improvement_as_keras_counts():
    """Identical inputs give identical embeddings: the triplet loss is flat and its gradient zero, so
    no epoch improves on the first. Keras' ReduceLROnPlateau(patience=2) cuts after epoch 3 (two
    epochs without improvement), and again after epoch 5; the rate then falls below min_lr."""
    x, y = torch.ones(60, 4), torch.arange(60) % 3
    head = torch.nn.Linear(4, 8)
    report = fit_embedding_head(head, x, y, HeadSchedule(patience=2, lr=1e-3, factor=0.1, min_lr=5e-5, max_epochs=20), seed=0)
    assert len(set(report.losses)) == 1  # flat, as intended
    assert report.lrs == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert report.stopped.startswith("learning rate below")
    with pytest.raises(ValueError, match="patience"):
        HeadSchedule(patience=0)
