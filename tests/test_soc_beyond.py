"""Chapter 2 beyond the paper: the certainty scores against torch.distributions and a hand softmax, and
tiny end-to-end runs of ``run_beyond`` and ``run_pair`` checked against what their trained models
give when evaluated here, naively."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch.distributions import Normal

from lib import soc_experiment as experiment
from lib.models import FeatureClassifier, FeatureClassifierConfig
from lib.training import pick_device
from lib.units import Records
from tests.test_soc_experiment import Identity2D, toy_split

CPU = pick_device("cpu")


def point_images(z: torch.Tensor) -> torch.Tensor:
    """Float "images" whose first two pixels, divided by 255 as batches do, are the points ``z``."""
    images = torch.zeros(len(z), 1, 2, 1)
    images[:, 0, :, 0] = 255 * z
    return images


def soc_model(means: torch.Tensor, log_scales: torch.Tensor | None = None) -> FeatureClassifier:
    model = FeatureClassifier(FeatureClassifierConfig(num_classes=len(means), head="soc", num_features=2, learn_scale=log_scales is not None))
    model.encoder, model.project = Identity2D(), torch.nn.Identity()
    model.head.means.weight.data = means.clone()
    if log_scales is not None:
        model.head.log_scales.data = log_scales.clone()
    return model


def softmax_model(weight: torch.Tensor, bias: torch.Tensor) -> FeatureClassifier:
    model = FeatureClassifier(FeatureClassifierConfig(num_classes=len(weight), head="softmax"))
    model.encoder, model.project, model.head = Identity2D(), torch.nn.Identity(), torch.nn.Linear(2, len(weight))
    model.head.weight.data, model.head.bias.data = weight.clone(), bias.clone()
    return model


def test_certainty_scores_are_the_class_log_densities_and_the_two_softmax_maxima():
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    log_scales = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.1]])
    weight, bias = torch.tensor([[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]]), torch.tensor([0.1, -0.3, 0.0])
    z = torch.tensor([[-1.0, 0.0], [0.2, 0.3], [3.0, -2.0], [0.0, 1.5]])
    scores = experiment.certainty_scores(soc_model(means, log_scales), softmax_model(weight, bias), point_images(z))
    for i, point in enumerate(z):
        log_density = [float(Normal(m, s.exp()).log_prob(point).sum()) for m, s in zip(means, log_scales)]
        assert float(scores[experiment.LOG_DENSITY][i]) == pytest.approx(max(log_density), abs=1e-5)
        exps = [math.exp(v) for v in log_density]
        assert float(scores[experiment.SOC_SOFTMAX][i]) == pytest.approx(max(exps) / sum(exps), abs=1e-6)
        logits = [sum(w * x for w, x in zip(row, point.tolist())) + b for row, b in zip(weight.tolist(), bias.tolist())]
        exps = [math.exp(v) for v in logits]
        assert float(scores[experiment.CE_SOFTMAX][i]) == pytest.approx(max(exps) / sum(exps), abs=1e-6)


def test_the_log_density_flags_far_away_images_that_the_softmax_is_sure_of():
    """Known images sit on their class means, unseen ones far out: every unseen image has a lower
    log-density than every known one (AUROC 1), while SOC's softmax is surest of the far-away ones."""
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 1.5]])
    z = torch.cat([means, torch.tensor([[30.0, 0.0], [-25.0, 5.0], [10.0, -40.0]])])
    unseen = torch.tensor([False] * 3 + [True] * 3)
    scores = experiment.certainty_scores(soc_model(means), softmax_model(torch.eye(3, 2), torch.zeros(3)), point_images(z))
    auroc = experiment.unseen_class_auroc(scores, unseen)
    assert auroc[experiment.LOG_DENSITY] == 1.0
    # by hand: on the first mean the other two are 4 and 3.25 squared units away, so its softmax maximum is
    # 1 / (1 + e^-2 + e^-1.625) = 0.7506; far out it is 1 to float precision
    assert float(scores[experiment.SOC_SOFTMAX][0]) == pytest.approx(1 / (1 + math.exp(-2) + math.exp(-1.625)), rel=1e-5)
    assert scores[experiment.SOC_SOFTMAX][:3].max() < 0.76 and scores[experiment.SOC_SOFTMAX][3:].min() > 0.999
    assert auroc[experiment.SOC_SOFTMAX] == 0.0


def tiny_settings(**beyond) -> experiment.Settings:
    return experiment.Settings(n_train=2000, width=4, epochs=2, lr=0.01, batch_size=32, means_lr_scale=1.0, channels_last=False,
                               cifar10_features=(2,), cifar100_features=(), widths=(), arm_features=(),
                               **{"held_out_class": 3, "ood_features": 2, "new_class_steps": 10, **beyond})


def spy_on_training(monkeypatch) -> list[dict]:
    """Record every call of ``train_model`` (its data, classes, model, recipe) and the network it returns."""
    calls, real = [], experiment.train_model

    def spy(train, encoder, recipe, model, num_classes, **kwargs):
        net, report = real(train, encoder, recipe, model, num_classes, **kwargs)
        calls.append({"train": train, "num_classes": num_classes, "model": model, "recipe": recipe, "net": net})
        return net, report

    monkeypatch.setattr(experiment, "train_model", spy)
    return calls


def image_keys(images: torch.Tensor) -> list[bytes]:
    return [img.numpy().tobytes() for img in images]


@torch.no_grad()
def soc_points(net: FeatureClassifier, images: torch.Tensor) -> torch.Tensor:
    net.eval()
    return net.project(net.encoder(images.float() / 255))


def test_run_beyond_trains_nine_classes_without_the_held_out_one_and_reports_what_its_models_give(tmp_path, monkeypatch):
    held_out = 3
    train, test = toy_split(12, 10), toy_split(4, 10, seed=1)
    calls = spy_on_training(monkeypatch)
    records = Records(tmp_path, "test", None)
    run = experiment.run_beyond(train, test, tiny_settings(), "toy", seed=0, device=CPU, records=records)

    # the two nine-class models saw no image of the held-out class, every other one, relabelled 0..8 in order
    assert [(c["num_classes"], c["model"]) for c in calls] == [(9, experiment.soc(2)), (9, experiment.CE)]
    new_label = {c: c if c < held_out else c - 1 for c in range(10) if c != held_out}
    expected = {key: new_label[int(y)] for key, y in zip(image_keys(train.images), train.labels) if int(y) != held_out}
    for c in calls:
        seen = dict(zip(image_keys(c["train"].images), c["train"].labels.tolist()))
        assert seen == expected

    # which test images are unseen, in the test set's own order
    assert torch.equal(run.unseen, test.labels == held_out)
    known = test.labels != held_out
    x = test.images.float() / 255
    soc9, ce9 = calls[0]["net"].eval(), calls[1]["net"].eval()
    with torch.no_grad():
        soc_logits, ce_logits = soc9(x), ce9(x)
    truth = torch.tensor([new_label.get(int(y), -1) for y in test.labels])
    assert run.soc9_accuracy == pytest.approx(float((soc_logits.argmax(1)[known] == truth[known]).float().mean()))
    assert run.ce9_accuracy == pytest.approx(float((ce_logits.argmax(1)[known] == truth[known]).float().mean()))

    # certainty scores of every test image, by torch.distributions on the trained model's points and means
    z, means = soc_points(soc9, test.images), soc9.head.means.weight.detach()
    log_density = torch.stack([Normal(m, torch.ones(2)).log_prob(z).sum(1) for m in means], 1)
    torch.testing.assert_close(run.scores[experiment.LOG_DENSITY], log_density.max(1).values, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run.scores[experiment.SOC_SOFTMAX], log_density.softmax(1).max(1).values, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(run.scores[experiment.CE_SOFTMAX], ce_logits.softmax(1).max(1).values, rtol=1e-4, atol=1e-5)
    assert (run.scores[experiment.LOG_DENSITY] <= -math.log(2 * math.pi) + 1e-6).all()  # a unit Gaussian's density peaks at 1 / 2 pi
    assert all((s >= 1 / 9 - 1e-6).all() and (s <= 1 + 1e-6).all() for k, s in run.scores.items() if k != experiment.LOG_DENSITY)
    for name, s in run.scores.items():
        assert run.auroc[name] == pytest.approx(roc_auc_score(run.unseen.numpy(), (-s).numpy()))

    assert set(run.placements) == {experiment.MEAN_OF_POINTS, experiment.TRAINED_MEAN, experiment.NEW_SOFTMAX_ROW}
    assert all(0 <= p.added <= 1 and 0 <= p.old <= 1 and 0 <= p.overall <= 1 and p.seconds > 0 for p in run.placements.values())
    assert set(run.curves) == {"soc", "ce"} and all(len(c) == 2 for c in run.curves.values())  # the nine-class models, every epoch
    # the mean-of-points placement by hand: the held-out class's mean is the mean of its training points,
    # and with unit scales every test image goes to the nearest of the ten means
    new_mean = soc_points(soc9, train.images[train.labels == held_out]).mean(0)
    ten = torch.cat([means, new_mean[None]]).tolist()
    nearest = [min(range(10), key=lambda k: sum((a - b) ** 2 for a, b in zip(p, ten[k]))) for p in z.tolist()]
    truth10 = [9 if int(y) == held_out else new_label[int(y)] for y in test.labels]
    hits = [n == t for n, t in zip(nearest, truth10)]
    placed = run.placements[experiment.MEAN_OF_POINTS]
    assert placed.added == pytest.approx(np.mean([h for h, u in zip(hits, run.unseen.tolist()) if u]))
    assert placed.old == pytest.approx(np.mean([h for h, u in zip(hits, run.unseen.tolist()) if not u]))

    again = experiment.run_beyond(train, test, tiny_settings(), "toy", seed=0, device=CPU, records=records)
    assert len(calls) == 2 and records.loaded == [records.computed[0]]  # read from its record, nothing trained again
    assert again.auroc == run.auroc and again.soc9_accuracy == run.soc9_accuracy and torch.equal(again.unseen, run.unseen)


def test_run_pair_trains_on_the_two_classes_in_their_order_for_five_times_the_epochs(tmp_path, monkeypatch):
    pair = (6, 1)  # class 6 becomes label 0, class 1 label 1
    train, test = toy_split(16, 10), toy_split(6, 10, seed=1)
    calls = spy_on_training(monkeypatch)
    settings = tiny_settings(pair_classes=pair)
    picture = experiment.run_pair(train, test, settings, "toy", seed=0, device=CPU, records=Records(tmp_path, "test", None))

    (call,) = calls
    assert call["num_classes"] == 2 and call["model"] == experiment.soc(1) and call["recipe"].epochs == 5 * settings.recipe.epochs
    in_pair = (train.labels == pair[0]) | (train.labels == pair[1])
    expected = {key: pair.index(int(y)) for key, y, keep in zip(image_keys(train.images), train.labels, in_pair) if keep}
    assert dict(zip(image_keys(call["train"].images), call["train"].labels.tolist())) == expected

    rows = torch.nonzero((test.labels == pair[0]) | (test.labels == pair[1])).flatten()
    assert picture.labels.tolist() == [pair.index(int(test.labels[i])) for i in rows]
    net = call["net"]
    assert picture.points.shape == (len(rows), 1) and picture.means.shape == (2, 1)
    torch.testing.assert_close(picture.points, soc_points(net, test.images[rows]), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(picture.means, net.head.means.weight.detach())
    # unit-scale Gaussians: an image is called the class whose mean is nearest, by a loop
    means = picture.means.flatten().tolist()
    nearest = [min(range(2), key=lambda k: abs(p - means[k])) for p in picture.points.flatten().tolist()]
    assert picture.accuracy == pytest.approx(np.mean([a == b for a, b in zip(nearest, picture.labels.tolist())]))
