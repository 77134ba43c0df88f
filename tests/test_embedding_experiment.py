"""Chapter 1's experiment: class choices, splits, the classic classifiers, and one tiny end-to-end run."""

from pathlib import Path

import numpy as np
import pytest
import torch

from lib import embedding_experiment as experiment
from lib.run import read_defaults
from lib.training import pick_device
from lib.units import Records
from tests.test_metric_learning import blobs

CHAPTER = "chapters/01_embeddings_extendable_classification.py"


@pytest.mark.parametrize(
    "classes, added, message",
    [
        ([0, 1, 1], 3, "repeat a class"),
        ([0, 1, 2], 2, "already among classes"),
        ([0, 1, 10], 3, "unknown"),
        ([0, 1, 2], -1, "unknown"),
        ([4], 3, "at least 2 classes"),
    ],
)
def test_invalid_class_choices_are_refused(classes, added, message):
    with pytest.raises(ValueError, match=message):
        experiment.check_classes(classes, added)


def test_splits_relabel_the_chosen_classes_in_order(mnist):
    sp = experiment.make_splits(mnist, experiment.Settings(datasets=("mnist",), classes=(7, 2, 5), added_class=0, train_per_class=20, test_per_class=10).task, seed=0)
    assert torch.bincount(sp.train.labels).tolist() == [20, 20, 20, 20] and sp.num_old == 3
    assert torch.bincount(sp.test.labels).tolist() == [10, 10, 10, 10]
    # label 3 is the added digit 0, label 0 the digit 7: check against the dataset's own images
    zeros = {img.numpy().tobytes() for img in mnist.train.images[mnist.train.labels == 0]}
    assert all(img.numpy().tobytes() in zeros for img in sp.train.images[sp.train.labels == 3])
    sevens = {img.numpy().tobytes() for img in mnist.train.images[mnist.train.labels == 7]}
    assert all(img.numpy().tobytes() in sevens for img in sp.train.images[sp.train.labels == 0])
    assert torch.equal(sp.old(sp.test).labels.unique(), torch.tensor([0, 1, 2]))


def test_classic_classifiers_separate_separable_embeddings():
    x, y = blobs(n_per_class=30, num_classes=4)
    xt, yt = blobs(n_per_class=10, num_classes=4, seed=0)
    out = experiment.fit_classic(experiment.classic_classifiers(0, knn_k=3), x, y, xt, yt)
    assert set(out) == {experiment.KNN, "random forest", "logistic regression", "SVM (RBF)", "decision tree", "naive Bayes (Gaussian)"}
    assert all(r["accuracy"] > 0.9 and r["fit_s"] > 0 for r in out.values())


def test_a_tiny_run_of_the_whole_procedure(mnist, tmp_path):
    p = read_defaults(Path(__file__).resolve().parents[1] / CHAPTER)
    p.update(train_per_class=20, test_per_class=10, max_head_epochs=2, knn_k=3, search_k=5, channels_last=False, mnist_epochs=1)
    settings = experiment.Settings(**p)
    sp = experiment.make_splits(mnist, settings.task, seed=0)
    records = Records(tmp_path / "units", "test", None)
    run = experiment.run_extension(sp, settings, "mnist", mnist.fingerprint, seed=0, device=pick_device("cpu"), records=records, index_dir=tmp_path)
    assert all(0 <= v <= 1 for v in run.accuracy.values()) and all(v > 0 for v in run.seconds.values())  # every step measured
    assert run.maps[experiment.MODEL4].shape == (40, p["embedding_dim"]) and len(run.map_rows) == 40  # every test image (fewer than tsne_points)
    assert set(run.search) == {"3-class index, starting classes", "extended index, added class", "extended index, starting classes", "4-class index, all classes"}
    assert run.neighbours.shape == (8, 5) and (run.neighbours < 80).all()  # 2 queries per class, training-set rows
    assert (tmp_path / "mnist-seed0.faiss").is_file()
    again = experiment.run_extension(sp, settings, "mnist", mnist.fingerprint, seed=0, device=pick_device("cpu"), records=records)
    assert records.loaded == ["mnist-seed0"] and again.accuracy == run.accuracy and (again.neighbours == run.neighbours).all()
    s = run.seconds  # Eqs. (4)-(7) written out by hand from the measured steps (not from the routes' own step lists)
    by_hand = {
        experiment.EQ4: s[experiment.T_STRAIGHT3],
        experiment.EQ5_KERAS: s[experiment.T_STRAIGHT3] + s[experiment.T_HEAD3_UNCACHED] + s[experiment.T_FEATURES_OLD]
        + s[experiment.T_EMBED3] + s[experiment.T_CLASSIC3],
        experiment.EQ5_CACHED: s[experiment.T_STRAIGHT3] + s[experiment.T_FEATURES_OLD] + s[experiment.T_HEAD3] + s[experiment.T_EMBED3]
        + s[experiment.T_CLASSIC3],
        experiment.EQ6: s[experiment.T_STRAIGHT4],
        experiment.EQ7_KERAS: s[experiment.T_HEAD4_UNCACHED] + s[experiment.T_FEATURES_OLD] + s[experiment.T_FEATURES_ADDED]
        + s[experiment.T_REEMBED] + s[experiment.T_CLASSIC4],
        experiment.EQ7_CACHED: s[experiment.T_FEATURES_ADDED] + s[experiment.T_HEAD4] + s[experiment.T_REEMBED] + s[experiment.T_CLASSIC4],
    }
    by_hand |= {experiment.CONTROL_SOFTMAX: s[experiment.T_FEATURES_ADDED] + s[experiment.T_SOFTMAX4],
                experiment.CONTROL_KNN: s[experiment.T_FEATURES_ADDED] + s[experiment.T_KNN_RAW4]}
    assert set(by_hand) == {*experiment.ROUTES, *experiment.CONTROLS}
    assert {experiment.SOFTMAX4, experiment.KNN_RAW4} <= set(run.accuracy)  # the controls' 4-class test accuracies
    assert run.head_reports[experiment.SOFTMAX_HEAD].lrs[0] == settings.head.lr
    for route, seconds in by_hand.items():
        assert s[route.name] == pytest.approx(seconds), route.name
    # the "as Keras trains" figures are measured, not the cached ones plus something: the layer trained with the
    # trunk in every step took longer than the same training on cached features, on its own clock
    assert s[experiment.T_HEAD3_UNCACHED] > s[experiment.T_HEAD3] and s[experiment.T_HEAD4_UNCACHED] > s[experiment.T_HEAD4]
    assert run.same_head == {experiment.MODEL3: True, experiment.MODEL4: True}  # and trained the same layer
    assert np.array(run.confusion3).sum() == 30 and np.trace(np.array(run.confusion3)) == round(30 * run.accuracy[experiment.STRAIGHT3])


def test_the_layer_trained_on_cached_features_and_with_the_trunk_every_step_agree():
    from lib.metric_learning import HeadSchedule, fit_embedding_head
    from lib.models import PyramidConfig, PyramidTrunk
    from lib.training import predict

    torch.manual_seed(0)
    trunk = PyramidTrunk(PyramidConfig(fpn_channels=4, hidden=8)).eval()
    images = torch.randint(0, 256, (60, 1, 28, 28), dtype=torch.uint8)
    labels = torch.arange(60) % 3
    features = predict(trunk, images, batch_size=16)
    schedule = HeadSchedule(max_epochs=4)

    def train(inputs, encode=None):
        torch.manual_seed(1)
        head = torch.nn.Linear(trunk.feature_dim, 8)
        return head, fit_embedding_head(head, inputs, labels, schedule, seed=2, encode=encode)

    cached_head, cached = train(features)
    keras_head, keras = train(images, encode=lambda x: trunk(x.float() / 255))
    assert experiment.same_training(cached, keras)
    torch.testing.assert_close(cached_head.weight, keras_head.weight, rtol=1e-4, atol=1e-5)
    # running the trunk in every step is what costs: the same steps take more time than on cached features
    assert keras.clock_s > cached.clock_s > 0
