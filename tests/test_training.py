"""Determinism, the one checkpoint helper, and every training loop resumed bit-identically after an interruption."""

import ast
import copy
import dataclasses
from pathlib import Path

import pytest
import torch

from lib import cluster_labelling, hierarchy_experiment, metric_learning
from lib.cluster_labelling import Annotator, LabellingConfig, train_labelling_vae
from lib.data import Split, random_crop_flip, stratified_split, take
from lib.metric_learning import HeadSchedule, fit_embedding_head
from lib.models import FeatureClassifier, FeatureClassifierConfig, SmallCNN, SmallCNNConfig
from lib.keys import settings_digest
from lib.training import Checkpoint, Recipe, fit_classifier, predict

CONFIG = LabellingConfig(z_dim=3, hidden=(32, 16, 8), epochs=3, batch_size=64, k_min=3, k_max=6, elbow_sample=300, gamma=10.0)
CPU = torch.device("cpu")
LIB = Path(__file__).resolve().parents[1] / "lib"


class Interrupt(Exception):
    """A simulated interruption (a killed job, a lost machine)."""


def interrupt_on_call(n: int, function):
    """``function``, raising :class:`Interrupt` on its n-th call instead of running."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise Interrupt(f"interrupted at call {n}")
        return function(*args, **kwargs)

    return wrapped


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


@pytest.fixture(scope="module")
def small(mnist):
    idx_ann, idx_val, idx_train, _ = stratified_split(mnist.train.labels, [600, 50, 600], seed=0)
    model = SmallCNN(SmallCNNConfig(width=4))
    fit_classifier(model, take(mnist.train, idx_ann), Recipe(epochs=1, lr=3e-3, batch_size=64), seed=0, device=CPU)
    test = take(mnist.test, torch.arange(300))
    return Annotator(model), take(mnist.train, idx_train), take(mnist.train, idx_val), test


# ---------------------------------------------------------------- the classifier loop


def test_fit_classifier_is_deterministic(small):
    _, tr, _, _ = small

    def fit(seed):
        torch.manual_seed(seed)  # the initial weights
        return fit_classifier(SmallCNN(SmallCNNConfig(width=4)), tr, Recipe(epochs=1, lr=1e-3, batch_size=64), seed=seed, device=CPU)

    assert fit(5).losses == fit(5).losses
    assert fit(5).losses != fit(6).losses


def test_fit_classifier_resumes_bit_identically_with_nadam_and_channels_last(small, tmp_path, monkeypatch):
    _, tr, _, _ = small
    recipe = Recipe(epochs=3, lr=1e-3, batch_size=64, optimiser="nadam", channels_last=True)

    def fit(checkpoint=None):
        torch.manual_seed(0)
        model = SmallCNN(SmallCNNConfig(width=4))
        return model, fit_classifier(model, tr, recipe, seed=0, device=CPU, checkpoint=checkpoint)

    straight, _ = fit()
    ckpt = Checkpoint(tmp_path, "cls", recipe, every_s=0)
    steps_per_epoch = -(-len(tr.labels) // recipe.batch_size)
    with monkeypatch.context() as m:  # killed in the middle of the third epoch
        m.setattr(torch.optim.NAdam, "step", interrupt_on_call(2 * steps_per_epoch + 3, torch.optim.NAdam.step))
        with pytest.raises(Interrupt):
            fit(ckpt)
    resumed, report = fit(ckpt)  # the same command again
    assert report.resumed and len(report.losses) == 3 and report.seconds > 0 and report.images_per_s > 0
    assert_same_weights(straight, resumed)


def test_fit_classifier_with_sgd_onecycle_a_loss_and_augmentation_resumes_bit_identically(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = Split(torch.randint(0, 256, (96, 3, 16, 16), generator=g, dtype=torch.uint8), torch.arange(96) % 3)
    recipe = Recipe(epochs=3, lr=0.05, batch_size=32, optimiser="sgd", weight_decay=5e-4, schedule="onecycle")

    def fit(checkpoint=None, stop_at_batch=None):
        torch.manual_seed(0)
        model = FeatureClassifier(FeatureClassifierConfig(width=4, num_classes=3, head="soc", num_features=2))
        augment = lambda x, gen: random_crop_flip(x, 2, gen)  # noqa: E731
        if stop_at_batch:
            augment = interrupt_on_call(stop_at_batch, augment)
        report = fit_classifier(model, data, recipe, seed=1, device=CPU, loss_fn=FeatureClassifier.loss, augment=augment,
                                lr_scales={"head.means": 10.0}, no_decay=("head.means",), checkpoint=checkpoint)
        return model, report

    straight, _ = fit()
    ckpt = Checkpoint(tmp_path, "soc", recipe, every_s=0)
    with pytest.raises(Interrupt):
        fit(ckpt, stop_at_batch=7)  # 3 batches an epoch: stops inside the third epoch
    resumed, report = fit(ckpt)
    assert report.resumed and len(report.losses) == 3
    assert_same_weights(straight, resumed)


def test_fit_classifier_finished_is_not_trained_again(small, tmp_path, monkeypatch):
    _, tr, _, _ = small
    recipe = Recipe(epochs=1, lr=1e-3, batch_size=64)
    torch.manual_seed(0)
    straight = SmallCNN(SmallCNNConfig(width=4))
    fit_classifier(straight, tr, recipe, seed=0, device=CPU)  # the reference: the same seed, no checkpoint at all
    ckpt = Checkpoint(tmp_path, "done", recipe)  # default every_s: the final epoch is saved all the same
    torch.manual_seed(0)
    fit_classifier(SmallCNN(SmallCNNConfig(width=4)), tr, recipe, seed=0, device=CPU, checkpoint=ckpt)
    monkeypatch.setattr(torch.optim.Adam, "step", interrupt_on_call(1, torch.optim.Adam.step))  # any step would raise
    torch.manual_seed(1)  # other initial weights: only the checkpoint can make them the trained ones
    again = SmallCNN(SmallCNNConfig(width=4))
    report = fit_classifier(again, tr, recipe, seed=0, device=CPU, checkpoint=ckpt)
    assert report.resumed
    assert_same_weights(straight, again)  # the finished training as an uninterrupted run left it, not trained again


def test_a_recipe_refuses_unknown_choices():
    with pytest.raises(ValueError, match="optimiser 'rmsprop' is unknown"):
        Recipe(epochs=1, lr=1e-3, batch_size=64, optimiser="rmsprop")
    with pytest.raises(ValueError, match="schedule 'cosine' is unknown"):
        Recipe(epochs=1, lr=1e-3, batch_size=64, schedule="cosine")
    with pytest.raises(ValueError, match="epochs=0"):
        Recipe(epochs=0, lr=1e-3, batch_size=64)


# ---------------------------------------------------------------- the labelling VAE


def train(small, seed, checkpoint=None, config=CONFIG):
    annotator, tr, val, test = small
    return train_labelling_vae(config, tr, val, test, annotator, annotator, seed=seed, device=CPU, checkpoint=checkpoint)


def test_same_seed_same_numbers_other_seed_other_numbers(small):
    a, b, c = train(small, 0), train(small, 0), train(small, 1)
    assert a["history"] == b["history"]
    assert a["history"] != c["history"]
    assert_same_weights(a["model"], b["model"])


def test_an_interrupted_vae_resumes_where_it_stopped(small, tmp_path, monkeypatch):
    reference = train(small, 0)
    checkpoint = Checkpoint(tmp_path, "run", CONFIG, every_s=0)
    real_evaluate = cluster_labelling.test_accuracy
    with monkeypatch.context() as m:
        m.setattr(cluster_labelling, "test_accuracy", interrupt_on_call(2, real_evaluate))  # dies at the end of epoch 2
        with pytest.raises(Interrupt):
            train(small, 0, checkpoint)
    assert len(torch.load(checkpoint.path, weights_only=True)["loop"]["history"]) == 1  # epoch 1 was saved, epoch 2 lost

    evaluated = []
    monkeypatch.setattr(cluster_labelling, "test_accuracy", lambda model, test: evaluated.append(1) or real_evaluate(model, test))
    resumed = train(small, 0, checkpoint)
    assert len(evaluated) == CONFIG.epochs - 1  # only epochs 2 and 3 ran again
    assert resumed["history"] == reference["history"]  # and exactly as if never interrupted
    assert resumed["resumed_at_epoch"] == 2
    assert_same_weights(reference["model"], resumed["model"])


def test_the_random_image_baseline_resumes_bit_identically(small, tmp_path, monkeypatch):
    from dataclasses import replace

    config = replace(CONFIG, label_source="random", random_labels=20)
    reference = train(small, 0, config=config)
    checkpoint = Checkpoint(tmp_path, "random", config, every_s=0)
    with monkeypatch.context() as m:
        m.setattr(cluster_labelling, "test_accuracy", interrupt_on_call(3, cluster_labelling.test_accuracy))
        with pytest.raises(Interrupt):
            train(small, 0, checkpoint, config=config)
    resumed = train(small, 0, checkpoint, config=config)
    assert resumed["resumed_at_epoch"] == 3 and resumed["history"] == reference["history"]
    assert_same_weights(reference["model"], resumed["model"])


def test_a_resumed_run_says_so(small, tmp_path):
    checkpoint = Checkpoint(tmp_path, "run", CONFIG, "says")
    assert train(small, 0, checkpoint)["resumed_at_epoch"] == 0
    assert train(small, 0, checkpoint)["resumed_at_epoch"] == CONFIG.epochs + 1  # finished: nothing left to train


def test_the_annotator_is_the_same_for_the_same_seed(mnist):
    from lib import vae_experiment

    splits = vae_experiment.make_splits(mnist, vae_experiment.Settings(n_train=100, n_val=20, n_annotator=300, n_judge=50, n_test=100).data)

    def weights():
        torch.rand(7)  # whatever the global generator went through before must not matter
        annotator, _ = vae_experiment.train_annotator(splits.annotator, splits.test, Recipe(epochs=1, lr=3e-3, batch_size=64), seed=3,
                                                      device=CPU, checkpoint=Checkpoint(None, "a"))
        return [p.clone() for p in annotator.model.state_dict().values()]

    for a, b in zip(weights(), weights()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------- the embedding head


def test_an_interrupted_head_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    from tests.test_metric_learning import blobs

    x, y = blobs(seed=1)
    schedule = HeadSchedule(patience=1, max_epochs=12)  # the plateau schedule cuts the rate: its state must survive too

    def fit(checkpoint=None):
        torch.manual_seed(0)
        head = torch.nn.Linear(x.shape[1], 4)
        return head, fit_embedding_head(head, x, y, schedule, seed=3, checkpoint=checkpoint)

    straight, report = fit()
    assert len(set(report.lrs)) > 1, "the test needs a learning-rate cut before the interruption"
    ckpt = Checkpoint(tmp_path, "head", schedule, every_s=0)
    steps = len(report.losses) // 2 * -(-len(y) // (3 * schedule.batch_class_repeats)) + 1  # the first step past half-way
    with monkeypatch.context() as m:
        m.setattr(metric_learning, "cosine_triplet_loss", interrupt_on_call(steps, metric_learning.cosine_triplet_loss))
        with pytest.raises(Interrupt):
            fit(ckpt)
    resumed, again = fit(ckpt)
    assert again.resumed and again.losses == report.losses and again.lrs == report.lrs
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)


# ---------------------------------------------------------------- the two-headed network and its pretraining


def two_head_setup():
    from tests.test_hierarchy import fake_animals

    ds = fake_animals()
    h = hierarchy_experiment.build_hierarchy(ds, 3, "dog5", 0)
    data = hierarchy_experiment.Settings(max_train_per_class=20, input_size=32).data
    recipe = hierarchy_experiment.HierarchyRecipe(epochs=4, lr=1e-3, batch_size=16, patience=3, augment_groups=2)
    return ds, h, data, recipe


def test_the_two_headed_net_with_augmentation_resumes_bit_identically(tmp_path, monkeypatch):
    from lib.models.hierarchical import HierarchicalConfig, HierarchicalNet

    ds, h, data, recipe = two_head_setup()
    train, val, _, _ = hierarchy_experiment.make_splits(ds, h, data, seed=0)

    def fit(checkpoint=None):
        torch.manual_seed(0)
        model = HierarchicalNet(HierarchicalConfig(backbone="convnext_mini", num_sub=len(h.sub_names), hidden=8, input_size=32))
        return model, hierarchy_experiment.fit_two_heads(model, train, val, h, recipe, weighted=True, seed=0, device=CPU,
                                                         checkpoint=checkpoint, desc="t")

    straight, reference = fit()
    assert len(reference.history["train loss"]) >= 3, "the test needs an interruption after the second epoch"
    ckpt = Checkpoint(tmp_path, "two", recipe, every_s=0)
    per_epoch = -(-len(train.labels) // recipe.batch_size)
    real = hierarchy_experiment.augmenter

    def augmenter_dying_in_epoch_3(*args):  # the augmentation draws from the global generator: its state must be restored
        return interrupt_on_call(2 * per_epoch + 2, real(*args))

    with monkeypatch.context() as m:
        m.setattr(hierarchy_experiment, "augmenter", augmenter_dying_in_epoch_3)
        with pytest.raises(Interrupt):
            fit(ckpt)
    saved = torch.load(ckpt.path, weights_only=True)["loop"]
    assert len(saved["history"]["train loss"]) == 2  # two epochs saved, the third lost
    resumed, result = fit(ckpt)
    assert result.resumed and result.history == reference.history and result.best_epoch == reference.best_epoch
    assert_same_weights(straight, resumed)


def test_the_pretraining_resumes_bit_identically(tmp_path, monkeypatch):
    from lib.data import Dataset

    g = torch.Generator().manual_seed(0)
    cifar = Dataset("fake CIFAR-10", Split(torch.randint(0, 256, (80, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(80) % 10),
                    Split(torch.zeros(10, 3, 32, 32, dtype=torch.uint8), torch.arange(10)), [str(i) for i in range(10)], {"format": "fake"})
    monkeypatch.setattr(hierarchy_experiment, "load_cifar10", lambda: cifar)
    settings = hierarchy_experiment.Settings(input_size=32, hidden=8, initialisation="cifar10", pretrain_images=80, pretrain_epochs=3,
                                             resnet_epochs=2, convnext_epochs=2, batch_size=16, augment_groups=2, channels_last=False)
    ds, h, _, _ = two_head_setup()

    def pretrain(directory):
        checkpoint = Checkpoint(directory, "pretrain", settings) if directory else None
        return hierarchy_experiment.pretrain("ConvNeXt", "cifar10", settings, ds, h, CPU, checkpoint)

    straight, _ = pretrain(None)
    monkeypatch.setattr(Checkpoint, "__init__", _checkpoint_saving_every_epoch(Checkpoint.__init__))
    real = hierarchy_experiment.augmenter
    with monkeypatch.context() as m:
        m.setattr(hierarchy_experiment, "augmenter", lambda *args: interrupt_on_call(12, real(*args)))  # 5 batches an epoch: in epoch 3
        with pytest.raises(Interrupt):
            pretrain(tmp_path)
    assert len(list(tmp_path.glob("pretrain-*.pt"))) == 1  # two epochs saved
    batches = []
    monkeypatch.setattr(hierarchy_experiment, "augmenter", lambda *args: (lambda x: batches.append(1) or real(*args)(x)))
    resumed, _ = pretrain(tmp_path)
    assert len(batches) == 5  # only the third epoch ran again
    for k in straight:
        assert torch.equal(straight[k], resumed[k]), k


def _checkpoint_saving_every_epoch(init):
    def patched(self, *args, **kwargs):
        init(self, *args, **{**kwargs, "every_s": 0})
    return patched


# ---------------------------------------------------------------- the checkpoint helper itself


def settings_under_test():
    """One instance of every settings dataclass the book's trainings are keyed by."""
    from lib import embedding_experiment, soc_experiment, vae_experiment
    from lib.models import PyramidConfig
    from lib.models.hierarchical import HierarchicalConfig

    return [
        Recipe(epochs=2, lr=1e-3, batch_size=8),
        soc_experiment.SocRecipe(epochs=2, lr=1e-3, batch_size=8),
        hierarchy_experiment.HierarchyRecipe(epochs=2, lr=1e-3, batch_size=8),
        hierarchy_experiment.Settings().data, hierarchy_experiment.Settings().networks, hierarchy_experiment.Settings().pretraining,
        HeadSchedule(), LabellingConfig(), vae_experiment.Settings().data,
        embedding_experiment.Settings().task, embedding_experiment.Settings().pyramid, PyramidConfig(), HierarchicalConfig(),
        FeatureClassifierConfig(),
    ]


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, tuple):
        return (*value, value[-1] if value else 1)
    raise TypeError(type(value))


FIELDS = [(s, f.name) for s in settings_under_test() for f in dataclasses.fields(s)]


@pytest.mark.parametrize("settings, field", FIELDS, ids=[f"{type(s).__name__}.{f}" for s, f in FIELDS])
def test_a_checkpoint_of_settings_that_differ_in_any_field_is_not_resumed(settings, field, tmp_path):
    other = copy.copy(settings)
    object.__setattr__(other, field, changed(getattr(settings, field)))  # bypass the range checks: only the key is tested
    model = torch.nn.Linear(2, 2)
    Checkpoint(tmp_path, "run", settings, 0, every_s=0).save({"epoch": 1}, final=True, model=model)
    assert Checkpoint(tmp_path, "run", settings, 0).resume(model=model) == {"epoch": 1}
    assert Checkpoint(tmp_path, "run", other, 0).resume(model=model) is None


def test_a_checkpoint_made_by_other_code_is_not_resumed(tmp_path):
    model = torch.nn.Linear(2, 2)
    Checkpoint(tmp_path, "run", Recipe(epochs=1, lr=1, batch_size=1), code="abc").save({"n": 1}, final=True, model=model)
    assert Checkpoint(tmp_path, "run", Recipe(epochs=1, lr=1, batch_size=1), code="abd").resume(model=model) is None
    assert settings_digest(1, code="abc") != settings_digest(1, code="abd")


def test_a_damaged_checkpoint_is_reported_and_the_training_starts_again(tmp_path, capsys):
    c = Checkpoint(tmp_path, "run", "settings")
    c.path.write_bytes(b"not a checkpoint")
    assert c.resume(model=torch.nn.Linear(2, 2)) is None
    assert "unreadable" in capsys.readouterr().out


def test_a_checkpoint_holds_only_tensors_and_plain_containers(tmp_path):
    c = Checkpoint(tmp_path, "run", "settings", every_s=0)
    with pytest.raises(TypeError, match="plain containers"):
        c.save({"config": CONFIG}, final=True, model=torch.nn.Linear(2, 2))
    import numpy as np

    with pytest.raises(TypeError, match="float64"):
        c.save({"inertia": np.float64(1.0)}, final=True, model=torch.nn.Linear(2, 2))


def test_saves_are_at_most_once_a_minute_unless_final(tmp_path):
    model = torch.nn.Linear(2, 2)
    c = Checkpoint(tmp_path, "run", "settings")  # every_s = 60
    c.save({"epoch": 1}, model=model)
    assert not c.path.exists()
    c.save({"epoch": 2}, final=True, model=model)
    assert Checkpoint(tmp_path, "run", "settings").resume(model=model) == {"epoch": 2}
    c.remove()
    assert not c.path.exists()


def test_nothing_is_loaded_without_weights_only_true():
    """lib, the benchmarks and the tests read checkpoints and records as tensors and plain containers only."""
    offenders = []
    for path in [p for folder in ("lib", "benchmarks", "tests") for p in (LIB.parent / folder).rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "load" and getattr(node.func.value, "id", None) == "torch":
                weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                if not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


# ---------------------------------------------------------------- prediction and parameter groups


def test_predict_agrees_across_memory_layouts_and_can_stay_on_the_device():
    torch.manual_seed(0)
    model = SmallCNN(SmallCNNConfig(width=4)).eval()
    images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
    plain = predict(model, images, batch_size=4)
    reference = model(images.float() / 255)
    torch.testing.assert_close(plain, reference)  # batched and unbatched alike
    torch.testing.assert_close(predict(model, images, channels_last=True), plain, rtol=1e-4, atol=1e-5)
    assert predict(model, images, to_cpu=False).device == next(model.parameters()).device


def test_lr_scales_move_the_named_parameters_that_much_faster():
    from lib.training import parameter_groups

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    groups = parameter_groups(model, 0.1, {"1.": 10.0})
    assert [g["lr"] for g in groups] == pytest.approx([0.1, 1.0])
    assert {id(p) for p in groups[1]["params"]} == {id(model[1].weight), id(model[1].bias)}
    # one plain SGD step: every parameter has gradient 1, so each moves by its own learning rate
    opt = torch.optim.SGD(groups, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    moved = [float((b - p.detach()).mean()) for b, p in zip(before, model.parameters())]
    assert moved == pytest.approx([0.1, 0.1, 1.0, 1.0])
    with pytest.raises(ValueError, match="names no parameter"):
        parameter_groups(model, 0.1, {"head.means": 10.0})
    with pytest.raises(ValueError, match="must be positive"):
        parameter_groups(model, 0.1, {"1.": 0.0})


def test_no_decay_parameters_keep_their_value_under_weight_decay():
    from lib.training import parameter_groups

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    opt = torch.optim.SGD(parameter_groups(model, 0.1, {}, no_decay=("1.",)), lr=0.1, weight_decay=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only weight decay can move a parameter
    opt.step()
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters())]
    assert moved == [True, True, False, False]
