"""Chapter 2's experiment: parameter checks, the held-out relabelling, the frozen-model class, AUROC, a tiny sweep."""

from pathlib import Path

import pytest
import torch
from sklearn.metrics import roc_auc_score

from lib import soc_experiment as experiment
from lib.data import Split
from lib.models import FeatureClassifier, FeatureClassifierConfig
from lib.run import read_defaults
from lib.training import pick_device

CHAPTER = Path(__file__).resolve().parents[1] / "chapters/02_self_organizing_class_embeddings.py"


@pytest.fixture
def defaults():
    return read_defaults(CHAPTER)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cifar10_features": []}, "cifar10_features is empty"),
        ({"cifar10_features": [1, 1, 3]}, "distinct integers"),
        ({"cifar100_features": [0]}, "distinct integers"),
        ({"ood_features": 7}, "must be one of cifar10_features"),
        ({"held_out_class": 10}, "CIFAR-10 label"),
        ({"pair_classes": [3, 3]}, "two different CIFAR-10 labels"),
        ({"n_train": 500}, "at least 1,000"),
        ({"n_test": 20_000}, "at most CIFAR's"),
        ({"epochs": 0}, "epochs=0 .* must be integers of at least 1"),
        ({"means_lr_scale": 0}, "must be positive"),
        ({"optimiser": "rmsprop"}, "optimiser 'rmsprop' is unknown"),
        ({"encoder": "vgg"}, "encoder 'vgg'"),
        ({"widths": [8]}, "must not repeat the sweep's own width=8"),
        ({"widths": [4, 4]}, "distinct integers"),
        ({"widths": [12], "width_features": 2}, "width_features=2 must be one of cifar10_features"),
        ({"encoder": "resnet18", "widths": [12]}, "'resnet18' has none"),
        ({"arm_features": [2]}, "arm_features \\[2\\] must each be one of cifar10_features"),
        ({"arm_means_lr_scale": 10.0}, "equals means_lr_scale"),
        ({"arm_means_lr_scale": 0.0}, "must be positive"),
    ],
)
def test_bad_parameters_are_refused_with_their_name(defaults, change, message):
    experiment.Settings(**defaults)  # the chapter's own defaults pass
    with pytest.raises(ValueError, match=message):
        experiment.Settings(**{**defaults, **change})


def toy_split(n_per_class: int, num_classes: int, seed: int = 0) -> Split:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_classes).repeat_interleave(n_per_class)
    # every image is a flat colour that encodes its class, plus noise: learnable in a few steps
    images = (labels[:, None, None, None].float() * 255 / num_classes + 20 * torch.randn(len(labels), 3, 32, 32, generator=g))
    return Split(images.clamp(0, 255).to(torch.uint8), labels)


def test_held_out_splits_move_the_class_to_the_last_label():
    train, test = toy_split(4, 5), toy_split(2, 5, seed=1)
    train9, train10, test9, test10 = experiment.held_out_splits(train, test, held_out=2)
    assert train9.labels.unique().tolist() == [0, 1, 2, 3] and train10.labels.unique().tolist() == [0, 1, 2, 3, 4]
    assert len(test9.labels) == 8 and len(test10.labels) == 10
    # label 4 now holds the images that were class 2; label 2 those of class 3
    assert torch.equal(train10.images[train10.labels == 4], train.images[train.labels == 2])
    assert torch.equal(train10.images[train10.labels == 2], train.images[train.labels == 3])


def test_unseen_class_auroc_matches_scikit_learn_with_low_scores_flagging_the_unseen():
    g = torch.Generator().manual_seed(0)
    unseen = torch.rand(200, generator=g) < 0.2
    score = torch.randn(200, generator=g) - 1.5 * unseen.float()  # unseen images score lower
    ours = experiment.unseen_class_auroc({"s": score}, unseen)["s"]
    assert ours == pytest.approx(roc_auc_score(unseen.numpy(), (-score).numpy()))
    # by hand: the share of (unseen, known) pairs where the unseen image scores lower
    pairs = (score[unseen][:, None] < score[~unseen][None, :]).float().mean()
    assert ours == pytest.approx(float(pairs)) and ours > 0.8


class Identity2D(torch.nn.Module):
    """A stand-in encoder: an image's first two pixels are its point."""

    def forward(self, x):
        return x.flatten(1)[:, :2]


def frozen_model_with_points(means: torch.Tensor) -> FeatureClassifier:
    model = FeatureClassifier(FeatureClassifierConfig(num_classes=len(means), head="soc", num_features=2))
    model.encoder, model.project = Identity2D(), torch.nn.Identity()
    model.head.means.weight.data = means.clone()
    return model.eval()


def points_split(centres: torch.Tensor, n: int, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(centres)).repeat_interleave(n)
    z = centres[labels] + 0.5 * torch.randn(len(labels), 2, generator=g)
    images = torch.zeros(len(labels), 1, 2, 1)
    images[:, 0, :, 0] = 255 * z  # batches scale images by 1/255 on their way to the model
    return Split(images, labels)


def test_a_class_added_to_a_frozen_model_wins_its_own_points_and_leaves_the_old_ones():
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])  # the 4th class is the new one
    model = frozen_model_with_points(centres[:3])
    out = experiment.add_class_to_frozen_model(model, points_split(centres, 100, 0), points_split(centres, 50, 1), steps=300, seed=0)
    assert set(out) == {experiment.MEAN_OF_POINTS, experiment.TRAINED_MEAN}
    for placement in out.values():
        assert placement.added > 0.95 and placement.old > 0.95 and placement.seconds > 0, out
    assert torch.equal(model.head.means.weight, centres[:3]), "the frozen model itself is left as it was"


def tiny_settings(**recipe) -> experiment.Settings:
    return experiment.Settings(**{"n_train": 2000, "width": 4, "means_lr_scale": 1.0, "channels_last": False, "cifar10_features": (1, 2),
                                  "cifar100_features": (), "ood_features": 2, "epochs": 6, "lr": 0.01, "batch_size": 32, "widths": (),
                                  "arm_features": (), **recipe})


def test_a_tiny_sweep_trains_every_model_and_reports_its_cost(tmp_path):
    from lib.units import Records

    train, test = toy_split(48, 4), toy_split(8, 4, seed=1)
    records = Records(tmp_path, "test", None)
    run = experiment.run_sweep(train, test, tiny_settings(), "cifar10", "toy", num_classes=4, seed=0, device=pick_device("cpu"), records=records)
    assert len(records.computed) == 5 and records.summary()["units_from_records"] == 0
    assert list(run.accuracy) == [experiment.CE, experiment.bottleneck(1), experiment.soc(1), experiment.bottleneck(2), experiment.soc(2)]
    assert [m.name for m in run.accuracy][:3] == ["cross-entropy", "cross-entropy, bottleneck, 1 features", "SOC, 1 features"]
    assert set(run.curves) == set(run.accuracy)  # every model's test accuracy after every epoch
    assert all(len(c) == 6 and all(0 <= a <= 1 for a in c) for c in run.curves.values())
    assert all(0 <= a <= 1 for a in run.accuracy.values()) and all(len(v) == 4 for v in run.per_class.values())
    assert run.accuracy[experiment.CE] > 0.5, "flat colours per class are easy"
    assert all(run.images_per_s[m] > 0 and len(run.losses[m]) == 6 for m in run.accuracy)
    assert all(run.curves[m][-1] == pytest.approx(run.accuracy[m]) for m in run.accuracy)  # each curve ends where its model ends
    assert set(run.pictures) == {1, 2} and run.pictures[2][0].shape == (32, 2) and run.pictures[2][1].shape == (4, 2)


def test_weight_decay_never_touches_the_class_means():
    from lib.data import random_crop_flip  # noqa: F401 (the recipe's augmentation runs inside train_model)

    recipe = experiment.SocRecipe(epochs=1, lr=1e-9, batch_size=32, optimiser="sgd", weight_decay=1e6)  # decay alone would shrink every weight
    train = toy_split(16, 4)
    model, _ = experiment.train_model(train, experiment.Encoder("small", width=4), recipe, experiment.soc(2), 4, seed=0, device=pick_device("cpu"),
                                      checkpoint=None, desc="t")
    torch.manual_seed(0)
    fresh = FeatureClassifier(FeatureClassifierConfig(width=4, num_classes=4, head="soc", num_features=2))
    assert torch.allclose(model.head.means.weight, fresh.head.means.weight, atol=1e-6)  # the means kept their start
    assert not torch.allclose(model.project.weight, fresh.project.weight)  # the rest decayed


def test_the_capacity_sweep_and_the_arm_train_their_own_widths_and_means_rates_as_their_own_units(tmp_path, monkeypatch):
    from lib.units import Records

    seen = []
    real = experiment.train_model

    def spy(train, encoder, recipe, model, num_classes, **kwargs):
        net, report = real(train, encoder, recipe, model, num_classes, **kwargs)
        seen.append((model, recipe.means_lr_scale, net.config.width))
        return net, report

    monkeypatch.setattr(experiment, "train_model", spy)
    settings = tiny_settings(cifar10_features=(1,), ood_features=1, widths=(2,), width_features=1, arm_features=(1,), arm_means_lr_scale=5.0,
                             epochs=2)
    train, test = toy_split(24, 4), toy_split(4, 4, seed=1)
    run = experiment.run_sweep(train, test, settings, "cifar10", "toy", num_classes=4, seed=0, device=pick_device("cpu"),
                               records=Records(tmp_path, "test", None))
    w = experiment.at_width
    capacity = [w(experiment.CE, 2), w(experiment.bottleneck(1), 2), w(experiment.soc(1), 2)]
    arm = experiment.Model("soc", 1, means_lr_scale=5.0)
    assert list(run.accuracy) == [experiment.CE, experiment.bottleneck(1), experiment.soc(1), *capacity, arm]
    assert [(s, width) for _, s, width in seen] == [(1.0, 4)] * 3 + [(1.0, 2)] * 3 + [(5.0, 4)]
    assert len({m.tag for m in run.accuracy}) == 7 and len({m.name for m in run.accuracy}) == 7  # every unit its own record
    assert set(run.pictures) == {1}, "only the sweep's own SOC models are drawn"
    # CIFAR-100 has no capacity sweep and no arm
    assert experiment.all_models(settings, "cifar100") == experiment.sweep_models(settings.sweep.dims("cifar100"))


def test_the_work_counts_the_capacity_sweep_at_its_widths_and_the_arm():
    base = tiny_settings(cifar10_features=(1, 3), ood_features=3)
    arm = tiny_settings(cifar10_features=(1, 3), ood_features=3, arm_features=(3,), arm_means_lr_scale=10.0)
    wide = tiny_settings(cifar10_features=(1, 3), ood_features=3, widths=(8,), width_features=3)
    per_model = experiment.work(arm) - experiment.work(base)  # one more model at width 4
    assert per_model > 0
    assert experiment.work(wide) - experiment.work(base) == pytest.approx(3 * per_model * (8 / 4) ** 2)  # three heads, cost ~ width^2


def test_the_placement_scores_match_scikit_learn():
    from sklearn.metrics import accuracy_score, recall_score

    g = torch.Generator().manual_seed(3)
    labels, predicted = torch.randint(4, (300,), generator=g), torch.randint(4, (300,), generator=g)
    placed = experiment._placement(predicted, labels, 3, seconds=1.0)
    assert placed.overall == pytest.approx(accuracy_score(labels, predicted))
    assert placed.added == pytest.approx(recall_score(labels, predicted, labels=[3], average="macro"))
    old = labels != 3
    assert placed.old == pytest.approx(accuracy_score(labels[old], predicted[old]))


def softmax_frozen_model(weight: torch.Tensor, bias: torch.Tensor) -> FeatureClassifier:
    model = FeatureClassifier(FeatureClassifierConfig(num_classes=len(weight), head="softmax"))
    model.encoder, model.project, model.head = Identity2D(), torch.nn.Identity(), torch.nn.Linear(2, len(weight))
    model.head.weight.data, model.head.bias.data = weight.clone(), bias.clone()
    return model.eval()


def test_a_new_softmax_row_on_a_frozen_cross_entropy_model_wins_its_class_and_moves_nothing_else():
    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0], [0.0, -4.0]])  # the 4th class is the new one
    weight, bias = centres[:3].clone(), -0.5 * (centres[:3] ** 2).sum(1)  # nearest-centre logits for the three old classes
    model = softmax_frozen_model(weight, bias)
    test = points_split(centres, 50, 1)
    placed = experiment.add_class_to_frozen_softmax(model, points_split(centres, 100, 0), test, steps=300, seed=0)
    assert placed.added > 0.95 and placed.old > 0.95 and placed.overall > 0.95 and placed.seconds > 0, placed
    assert torch.equal(model.head.weight, weight) and torch.equal(model.head.bias, bias), "the frozen model itself is left as it was"
    with pytest.raises(ValueError, match="needs a cross-entropy model"):
        experiment.add_class_to_frozen_softmax(frozen_model_with_points(centres[:3]), points_split(centres, 10, 0), test, steps=1, seed=0)


def test_the_new_softmax_row_and_the_trained_mean_share_their_steps_and_batches():
    """The same seed draws the same batches for both placements: only the row being trained differs."""
    drawn = []
    real = torch.randint

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        drawn.append(out.clone())
        return out

    centres = torch.tensor([[-4.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    train, test = points_split(centres, 40, 0), points_split(centres, 10, 1)
    import unittest.mock as mock

    with mock.patch.object(torch, "randint", spy):
        experiment.add_class_to_frozen_model(frozen_model_with_points(centres[:2]), train, test, steps=5, seed=7)
        soc_batches = list(drawn)
        drawn.clear()
        experiment.add_class_to_frozen_softmax(softmax_frozen_model(centres[:2], torch.zeros(2)), train, test, steps=5, seed=7)
    assert len(soc_batches) == len(drawn) == 5 and all(torch.equal(a, b) for a, b in zip(soc_batches, drawn))
