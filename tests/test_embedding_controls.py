"""Chapter 1's stopping rule (Keras' absolute min_delta), the extension's controls and the class choices."""

import pytest
import torch
from sklearn.linear_model import LogisticRegression

from lib import embedding_experiment as experiment
from lib.metric_learning import HeadSchedule, fit_embedding_head, fit_softmax_head
from tests.test_metric_learning import blobs


def keras_lrs(losses, lr, factor, patience, min_delta):
    """Keras' ReduceLROnPlateau (mode "min", cooldown 0) written out as a loop: the learning rate of
    every epoch, given the losses the epochs ended with."""
    best, wait, lrs = float("inf"), 0, []
    for loss in losses:
        lrs.append(lr)
        if loss < best - min_delta:
            best, wait = loss, 0
        else:
            wait += 1
            if wait >= patience:
                lr, wait = lr * factor, 0
    return lrs


@pytest.mark.parametrize("min_delta", [0.0, 1e-4, 0.02, 10.0])
@pytest.mark.parametrize("train", ["triplet", "softmax"])
def test_the_plateau_rule_is_keras_with_an_absolute_min_delta(train, min_delta):
    x, y = blobs(n_per_class=30)
    schedule = HeadSchedule(patience=2, min_delta=min_delta, max_epochs=25)
    fit = fit_embedding_head if train == "triplet" else fit_softmax_head
    head = torch.nn.Linear(x.shape[1], 8 if train == "triplet" else 3)
    report = fit(head, x, y, schedule, seed=0)
    assert report.lrs == pytest.approx(keras_lrs(report.losses, schedule.lr, schedule.factor, schedule.patience, min_delta))
    if min_delta == 10.0:  # no epoch can improve by 10: two cuts, one every 2 epochs, and the rate is below 5e-5
        assert len(report.losses) == 5 and report.stopped.startswith("learning rate below")


def test_an_absolute_min_delta_cuts_where_a_relative_threshold_would_not():
    """A loss of about 1e-4 that keeps falling by a few per cent an epoch improves by PyTorch's default
    relative test (1e-4 of the best) but not by Keras' absolute one (1e-4): the rate is cut."""
    losses = [1e-4 * 0.95**i for i in range(6)]
    assert keras_lrs(losses, 1e-3, 0.1, 2, 1e-4) == pytest.approx([1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    plateau = HeadSchedule(patience=2).plateau(opt)
    lrs = []
    for loss in losses:
        lrs.append(opt.param_groups[0]["lr"])
        plateau.step(loss)
    assert lrs == pytest.approx(keras_lrs(losses, 1e-3, 0.1, 2, 1e-4))
    with pytest.raises(ValueError, match="min_delta"):
        HeadSchedule(min_delta=-1e-4)


def test_the_softmax_control_learns_as_well_as_logistic_regression():
    x, y = blobs(n_per_class=40, num_classes=4)
    xt, yt = blobs(n_per_class=40, num_classes=4, seed=0)[0] + 0.5 * torch.randn(160, 12, generator=torch.Generator().manual_seed(1)), y
    head = torch.nn.Sequential(torch.nn.Linear(12, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    report = fit_softmax_head(head, x, y, HeadSchedule(max_epochs=60), seed=0)
    assert report.losses[-1] < 0.1 * report.losses[0]
    ours = float((head(xt).argmax(1) == yt).float().mean())
    reference = LogisticRegression(max_iter=2000).fit(x.numpy(), y.numpy()).score(xt.numpy(), yt.numpy())
    assert ours >= reference - 0.05 and reference > 0.9


def test_knn_on_the_trunks_features_is_cosine_knn():
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(50, 6, generator=g), torch.randn(20, 6, generator=g)
    labels = (train[:, 0] > 0).long()
    train[:7] *= 100  # a long vector must not outvote its direction: the metric is the angle
    predicted = experiment.knn_on_features(train, labels, test, k=3)
    cos = torch.nn.functional.normalize(test, dim=1) @ torch.nn.functional.normalize(train, dim=1).T
    for q in range(len(test)):  # a naive loop: the 3 most similar training rows vote
        top = sorted(range(len(train)), key=lambda i: -float(cos[q, i]))[:3]
        assert predicted[q] == int(sum(int(labels[i]) for i in top) >= 2)


def test_fashion_mnist_has_a_case_for_every_class_choice():
    s = experiment.Settings(fashion_classes=[[1, 5, 8], [0, 1, 2]], fashion_added=[9, 3])
    assert [(c.name, c.dataset, c.classes, c.added_class) for c in s.task.cases] == [
        ("mnist", "mnist", (0, 1, 2), 3), ("fashion-mnist", "fashion-mnist", (1, 5, 8), 9), ("fashion-mnist-012", "fashion-mnist", (0, 1, 2), 3)]
    assert [c.name for c in experiment.Settings(datasets=("fashion-mnist",)).task.cases] == ["fashion-mnist"]
    with pytest.raises(ValueError, match="same length"):
        experiment.Settings(fashion_classes=[[1, 5, 8], [0, 1, 2]], fashion_added=[9])
    with pytest.raises(ValueError, match="already among classes"):
        experiment.Settings(fashion_classes=[[1, 5, 8]], fashion_added=[5])
    with pytest.raises(ValueError, match="repeat a choice"):
        experiment.Settings(fashion_classes=[[1, 5, 8], [0, 1, 2], [0, 1, 2]], fashion_added=[9, 3, 4])


def test_a_case_picks_its_own_classes(mnist):
    s = experiment.Settings(fashion_classes=[[1, 5, 8], [0, 1, 2]], fashion_added=[9, 3], train_per_class=10, test_per_class=5)
    units = [experiment.extension_unit(s, c.dataset, "data", 0, c) for c in s.task.cases]
    assert [u.name for u in units] == ["mnist-seed0", "fashion-mnist-seed0", "fashion-mnist-012-seed0"]
    assert len({repr(u.key) for u in units}) == 3  # each case is its own record
    sp = experiment.make_splits(mnist, s.task, seed=0, case=experiment.Case("digits", "mnist", (7, 2, 5), 0))
    sevens = {img.numpy().tobytes() for img in mnist.train.images[mnist.train.labels == 7]}
    zeros = {img.numpy().tobytes() for img in mnist.train.images[mnist.train.labels == 0]}
    assert all(img.numpy().tobytes() in sevens for img in sp.train.images[sp.train.labels == 0])
    assert all(img.numpy().tobytes() in zeros for img in sp.train.images[sp.train.labels == 3])


def test_an_epoch_of_one_batch_trains():
    """Fewer images than a batch's anchors (K * batch_class_repeats): the epoch is one batch."""
    x, y = blobs(n_per_class=5)
    report = fit_embedding_head(torch.nn.Linear(x.shape[1], 4), x, y, HeadSchedule(max_epochs=2), seed=0)
    assert len(report.losses) == 2
