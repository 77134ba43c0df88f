"""The labelling machinery of chapter 4 on hand-made latents and a scripted annotator."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lib.cluster_labelling import (
    Annotator,
    LabellingConfig,
    choose_k,
    confidence_weights,
    elbow,
    label_clusters,
)


def blobs(n_per, centres, spread, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, spread, size=(n_per, len(c))) for c in centres]).astype(np.float32)


def test_elbow_finds_the_number_of_well_separated_blobs():
    rng = np.random.default_rng(1)
    centres = rng.uniform(-20, 20, size=(6, 4))
    k, inertias = choose_k(blobs(200, centres, 0.5), k_min=2, k_max=14, seed=0, sample=5000)
    assert k == 6
    assert list(inertias) == list(range(2, 15))


def test_elbow_of_a_hand_made_curve():
    # inertia falls steeply to k=4 and is flat after: the elbow is 4
    assert elbow([2, 3, 4, 5, 6, 7, 8], [100, 60, 20, 18, 16, 14, 12]) == 4


def test_confidence_weights_are_eq2():
    d = torch.tensor([0.0, 1.0, 2.5])
    w = confidence_weights(d, torch.tensor(0.8), a=0.7)
    for wi, di in zip(w.tolist(), d.tolist()):
        assert math.isclose(wi, 0.8 * math.exp(-0.7 * di), rel_tol=1e-6)


class SignReader(nn.Module):
    """A scripted annotator for 1 x 1 x 2 "images" (x, y): reads the label off the sign of x; its
    confidence is high when |x| is large and near chance when x is close to 0."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        x = images.flatten(1)[:, 0]
        return torch.stack([-4 * x, 4 * x], dim=1) + self.dummy


def test_label_clusters_propagates_and_splits_invalid_centres():
    # two clean clusters far left / far right, and one ambiguous pair of clusters straddling x = 0,
    # whose common centre (x ~ 0) the annotator cannot read; split again, each half is readable.
    left = blobs(100, [(-3.0, 0.0)], 0.05, seed=1)
    right = blobs(100, [(3.0, 0.0)], 0.05, seed=2)
    pair = blobs(100, [(-0.6, 8.0), (0.6, 8.0)], 0.02, seed=3)
    points = torch.from_numpy(np.concatenate([left, right, pair]))
    annotator = Annotator(SignReader())
    config = LabellingConfig(fixed_k=3, k_second_max=4, valid_confidence=0.9, a=0.5)
    result = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), annotator, config, seed=0)
    assert result.k == 3
    assert (result.centre_level == 2).sum() >= 2  # the ambiguous cluster was split
    assert result.labels_given == annotator.labels_given == len(result.centre_labels)
    truth = torch.cat([torch.zeros(100), torch.ones(100), torch.zeros(100), torch.ones(100)]).long()
    assert torch.equal(result.targets, truth)
    # weights follow Eq. (2) with the centre each image was labelled by
    assert (result.weights > 0).all() and (result.weights <= 1).all()
    first_left = (result.centre_level == 1) & (result.centres[:, 0] < -2)
    p_c, centre = result.centre_confidence[first_left][0], result.centres[first_left][0]
    expected = p_c * torch.exp(-0.5 * (points[:100] - centre).norm(dim=1))
    torch.testing.assert_close(result.weights[:100], expected)


def test_unreadable_clusters_stay_unlabelled():
    points = torch.from_numpy(blobs(50, [(0.0, 0.0)], 0.01))
    config = LabellingConfig(fixed_k=2, k_second_max=3, valid_confidence=0.99)
    result = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), Annotator(SignReader()), config, seed=0)
    assert (result.targets == -1).all() and (result.weights == 0).all()


@pytest.mark.parametrize("bad", [dict(k_min=1), dict(k_min=9, k_max=5), dict(valid_confidence=1.5), dict(epochs=1, unsupervised_epochs=1), dict(label_source="oracle")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        LabellingConfig(**bad)


def test_pixel_baseline_labels_test_images_by_the_nearest_valid_centre():
    from lib.vae_experiment import Splits, pixel_kmeans_baseline

    split, reader = two_pixel_digits()
    splits = Splits(annotator=split, judge=split, val=split, train=split, test=split)
    result = pixel_kmeans_baseline(splits, Annotator(reader), LabellingConfig(fixed_k=2, valid_confidence=0.9), seed=0)
    assert result["test_accuracy"] == 1.0 and result["labels_given"] == 2
    refused = pixel_kmeans_baseline(splits, Annotator(reader), LabellingConfig(fixed_k=2, valid_confidence=1.0), seed=0)
    assert refused["test_accuracy"] == 0.0  # no centre readable: nothing can be labelled


class CentredSignReader(SignReader):
    def forward(self, images):
        return super().forward(images - 0.5)


def two_pixel_digits(n: int = 60, seed: int = 0):
    """"Images" of 2 pixels: dark-left images are class 0, bright-left class 1; and a reader for them."""
    from lib.data import Split

    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(0, 40, n), rng.uniform(215, 255, n)])
    images = torch.from_numpy(np.stack([x, np.full_like(x, 128)], 1).astype(np.uint8)).view(-1, 1, 1, 2)
    labels = torch.cat([torch.zeros(n), torch.ones(n)]).long()
    return Split(images, labels), CentredSignReader()


def test_random_labelling_picks_the_same_images_for_the_same_seed_and_weights_them_by_confidence():
    from lib.cluster_labelling import random_labelling

    split, reader = two_pixel_digits()
    annotator = Annotator(reader)
    a, b, c = (random_labelling(len(split.labels), split.images, annotator, 10, seed) for seed in (3, 3, 4))
    assert annotator.labels_given == 30 and a.labels_given == 10
    picked = torch.nonzero(a.targets >= 0).flatten()
    assert torch.equal(picked, torch.nonzero(b.targets >= 0).flatten()) and not torch.equal(picked, torch.nonzero(c.targets >= 0).flatten())
    assert torch.equal(a.targets[picked], split.labels[picked])  # the reader is right on every image
    _, confidence = annotator.recognise(split.images[picked].float() / 255)
    torch.testing.assert_close(a.weights[picked], confidence)  # Eq. (2) with d = 0: the confidence itself
    assert (a.weights[a.targets < 0] == 0).all()


class PixelVAE(nn.Module):
    """A stand-in for the VAE whose latent is the image itself and whose decoder returns it, darkened by ``shift``."""

    def __init__(self, shift: float = 0.0):
        super().__init__()
        self.dummy, self.shift = nn.Parameter(torch.zeros(1)), shift

    def encode(self, x):
        return x.flatten(1), None

    def decode(self, z):
        return (z - self.shift).view(-1, 1, 1, 2)


def test_reconstruction_accuracy_is_the_judges_accuracy_on_the_reconstructions():
    from lib.cluster_labelling import reconstruction_accuracy

    split, reader = two_pixel_digits()
    judge = Annotator(reader)
    assert reconstruction_accuracy(PixelVAE(), judge, split) == 1.0  # perfect reconstructions
    assert reconstruction_accuracy(PixelVAE(shift=1.0), judge, split) == 0.5  # every reconstruction reads as a 0: half are right
    assert judge.labels_given == 0  # judging spends no label


def test_a_classifier_on_the_random_labels_alone_learns_from_them_and_spends_exactly_them():
    from lib.vae_experiment import Splits, supervised_steps, train_on_labels_alone

    split, reader = two_pixel_digits()
    test, _ = two_pixel_digits(seed=1)
    splits = Splits(annotator=split, judge=split, val=split, train=split, test=test)
    config = LabellingConfig(z_dim=2, hidden=(32, 16, 8), epochs=6, unsupervised_epochs=1, batch_size=16, lr=1e-2)
    assert supervised_steps(config, len(split.labels)) == 5 * 8  # five labelled epochs of ceil(120 / 16) steps
    annotator = Annotator(reader)
    out = train_on_labels_alone(splits, annotator, config, n_labels=12, seed=0, device=torch.device("cpu"))
    assert out["labels_given"] == 12 and annotator.labels_given == 12
    assert out["test_accuracy"] > 0.9


class TieReader(nn.Module):
    """A scripted annotator that is exactly undecided between two digits: confidence 0.5 on every image."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return torch.zeros(len(images), 2) + 0 * self.dummy


def test_a_centre_exactly_at_the_threshold_is_a_valid_digit():
    points = torch.from_numpy(blobs(40, [(0.0, 0.0)], 0.3))
    config = LabellingConfig(fixed_k=1, k_second_max=3, valid_confidence=0.5)
    annotator = Annotator(TieReader())
    result = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), annotator, config, seed=0)
    assert float(result.centre_confidence[0]) == 0.5
    assert (result.centre_level == 1).all() and annotator.labels_given == 1  # valid: not split again
    assert (result.targets == 0).all() and (result.weights > 0).all()


def two_level_labelling():
    """The scene of test_label_clusters_propagates_and_splits_invalid_centres: an ambiguous cluster of two tight halves."""
    left = blobs(100, [(-3.0, 0.0)], 0.05, seed=1)
    right = blobs(100, [(3.0, 0.0)], 0.05, seed=2)
    pair = blobs(100, [(-0.6, 8.0), (0.6, 8.0)], 0.02, seed=3)
    points = torch.from_numpy(np.concatenate([left, right, pair]))
    config = LabellingConfig(fixed_k=3, k_second_max=2, valid_confidence=0.9, a=0.5)  # the second level may split in two only
    return points, label_clusters(points, lambda c: c.view(-1, 1, 1, 2), Annotator(SignReader()), config, seed=0)


def test_an_invalid_cluster_of_two_halves_is_split_in_two():
    """The second level's k starts at 2: with k_second_max = 2, a cluster of two halves gets its two centres."""
    _, result = two_level_labelling()
    second = result.centres[result.centre_level == 2]
    assert len(second) == 2
    assert sorted(second[:, 0].tolist()) == pytest.approx([-0.6, 0.6], abs=0.01)


def test_second_level_members_are_weighted_by_their_own_centre():
    """Eq. (2) at the second level: p_c and the distance of the centre that labelled the image."""
    points, result = two_level_labelling()
    for m in torch.nonzero(result.centre_level == 2).flatten().tolist():
        centre, p_c = result.centres[m], result.centre_confidence[m]
        members = torch.nonzero((points - centre).norm(dim=1) < 0.3).flatten()  # the tight half around this centre
        assert len(members) == 100
        torch.testing.assert_close(result.weights[members], p_c * torch.exp(-0.5 * (points[members] - centre).norm(dim=1)))


class NeverAsked(nn.Module):
    """An annotator model that fails the test if it is ever shown an image (the oracle must not ask it)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        raise AssertionError("the oracle asked the simulated annotator")


def test_the_oracle_labels_each_centre_with_its_clusters_majority_digit_by_hand():
    # three far-apart blobs whose true digits are mixed: 20 sevens and 10 ones; 25 twos; 15 fours and 14 nines
    points = torch.from_numpy(np.concatenate([blobs(30, [(-10.0, 0.0)], 0.1, seed=1), blobs(25, [(10.0, 0.0)], 0.1, seed=2),
                                              blobs(29, [(0.0, 10.0)], 0.1, seed=3)]))
    truth = torch.tensor([7] * 20 + [1] * 10 + [2] * 25 + [4] * 15 + [9] * 14)
    annotator = Annotator(NeverAsked())
    config = LabellingConfig(fixed_k=3, valid_confidence=0.9, a=0.5, oracle=True)
    result = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), annotator, config, seed=0, truth=truth)
    assert annotator.labels_given == 3 and (result.centre_level == 1).all()  # one label a centre, nothing split again
    by_blob = {}
    for lab, centre in zip(result.centre_labels.tolist(), result.centres.tolist()):
        by_blob["left" if centre[0] < -5 else "right" if centre[0] > 5 else "top"] = lab
    assert by_blob == {"left": 7, "right": 2, "top": 4}  # the majorities, counted by hand
    assert (result.centre_confidence == 1).all()
    expected = torch.tensor([7] * 30 + [2] * 25 + [4] * 29)  # every member takes its cluster's majority, wrong or right
    assert torch.equal(result.targets, expected)
    assert result.agreement() == 1.0
    with pytest.raises(ValueError, match="true digits"):
        label_clusters(points, lambda c: c.view(-1, 1, 1, 2), annotator, config, seed=0)


def test_the_annotators_agreement_is_the_share_of_centres_labelled_as_their_majority_by_a_naive_count():
    # the sign reader says 0 left and 1 right; the true majority is 0 on both sides: it agrees on one centre of two
    points = torch.from_numpy(np.concatenate([blobs(40, [(-3.0, 0.0)], 0.05, seed=1), blobs(40, [(3.0, 0.0)], 0.05, seed=2)]))
    truth = torch.tensor([0] * 30 + [1] * 10 + [0] * 25 + [1] * 15)
    config = LabellingConfig(fixed_k=2, valid_confidence=0.9)
    result = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), Annotator(SignReader()), config, seed=0, truth=truth)
    naive = []
    for lab, centre in zip(result.centre_labels.tolist(), result.centres.tolist()):
        side = slice(0, 40) if centre[0] < 0 else slice(40, 80)
        counts = torch.bincount(truth[side], minlength=2).tolist()
        naive.append(lab == counts.index(max(counts)))
    assert sorted(result.centre_labels.tolist()) == [0, 1] and result.centre_majority.tolist() == [0, 0]
    assert result.agreement() == pytest.approx(sum(naive) / len(naive)) == 0.5
    # without the truth nothing is recorded, and labelling is unchanged
    blind = label_clusters(points, lambda c: c.view(-1, 1, 1, 2), Annotator(SignReader()), config, seed=0)
    assert blind.centre_majority is None and blind.agreement() is None and torch.equal(blind.targets, result.targets)


@pytest.mark.parametrize("bad", [dict(random_labels=(3, -1)), dict(oracle=True, label_source="random")])
def test_config_rejects_a_negative_round_and_a_random_oracle(bad):
    with pytest.raises(ValueError):
        LabellingConfig(**bad)
