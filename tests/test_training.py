"""Determinism (same seed, same numbers) and resuming an interrupted run exactly."""

import pytest
import torch

from lib import cluster_labelling
from lib.cluster_labelling import Annotator, LabellingConfig, train_labelling_vae
from lib.data import stratified_split, take
from lib.models import SmallCNN, SmallCNNConfig
from lib.training import Checkpoint, fit_classifier, predict

CONFIG = LabellingConfig(z_dim=3, hidden=(32, 16, 8), epochs=3, batch_size=64, k_min=3, k_max=6, elbow_sample=300, gamma=10.0)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small(mnist):
    idx_ann, idx_val, idx_train, _ = stratified_split(mnist.train.labels, [600, 50, 600], seed=0)
    model = SmallCNN(SmallCNNConfig(width=4))
    fit_classifier(model, take(mnist.train, idx_ann), epochs=1, lr=3e-3, batch_size=64, seed=0, device=CPU)
    test = take(mnist.test, torch.arange(300))
    return Annotator(model), take(mnist.train, idx_train), take(mnist.train, idx_val), test


def train(small, seed, checkpoint=None):
    annotator, tr, val, test = small
    return train_labelling_vae(CONFIG, tr, val, test, annotator, seed=seed, device=CPU, checkpoint=checkpoint or Checkpoint(None, "t", {}))


def test_same_seed_same_numbers_other_seed_other_numbers(small):
    a, b, c = train(small, 0), train(small, 0), train(small, 1)
    assert a["history"] == b["history"]
    assert a["history"] != c["history"]
    for (name, p), q in zip(a["model"].state_dict().items(), b["model"].state_dict().values()):
        assert torch.equal(p, q), name


def test_fit_classifier_is_deterministic(small):
    _, tr, _, _ = small
    def fit(seed):
        torch.manual_seed(seed)  # the initial weights
        return fit_classifier(SmallCNN(SmallCNNConfig(width=4)), tr, epochs=1, lr=1e-3, batch_size=64, seed=seed, device=CPU)

    assert fit(5).losses == fit(5).losses
    assert fit(5).losses != fit(6).losses


def test_fit_classifier_resumes_bit_identically_with_nadam_and_channels_last(small, tmp_path):
    _, tr, _, _ = small

    def fit(epochs, checkpoint=None):
        torch.manual_seed(0)
        model = SmallCNN(SmallCNNConfig(width=4))
        report = fit_classifier(model, tr, epochs=epochs, lr=1e-3, batch_size=64, seed=0, device=CPU, optimiser="nadam",
                                channels_last=True, checkpoint=checkpoint)
        return model, report

    straight, _ = fit(3)
    ckpt = Checkpoint(tmp_path, "cls", {"case": "resume"})
    fit(2, ckpt)  # "interrupted" after two epochs
    resumed, report = fit(3, ckpt)
    assert report.resumed and len(report.losses) == 3 and report.seconds > 0 and report.images_per_s > 0
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


def test_fit_classifier_refuses_an_unknown_optimiser(small):
    import pytest

    with pytest.raises(ValueError, match="optimiser 'rmsprop' is unknown"):
        fit_classifier(SmallCNN(SmallCNNConfig(width=4)), small[1], epochs=1, lr=1e-3, batch_size=64, seed=0, device=CPU, optimiser="rmsprop")
    with pytest.raises(ValueError, match="schedule 'cosine' is unknown"):
        fit_classifier(SmallCNN(SmallCNNConfig(width=4)), small[1], epochs=1, lr=1e-3, batch_size=64, seed=0, device=CPU, schedule="cosine")


def test_an_interrupted_run_resumes_where_it_stopped(small, tmp_path, monkeypatch):
    reference = train(small, 0)
    checkpoint = Checkpoint(tmp_path, "run", {"case": "resume"})
    real_evaluate = cluster_labelling.test_accuracy
    epochs_evaluated = []

    def evaluate(model, test, interrupt_at=None):
        epochs_evaluated.append(1)
        if len(epochs_evaluated) == interrupt_at:
            raise KeyboardInterrupt("simulated interruption at the end of epoch 2")
        return real_evaluate(model, test)

    monkeypatch.setattr(cluster_labelling, "test_accuracy", lambda m, t: evaluate(m, t, interrupt_at=2))
    with pytest.raises(KeyboardInterrupt):
        train(small, 0, checkpoint)
    assert torch.load(checkpoint.path, weights_only=False)["epoch"] == 1  # epoch 1 was saved, epoch 2 lost

    epochs_evaluated.clear()
    monkeypatch.setattr(cluster_labelling, "test_accuracy", evaluate)
    resumed = train(small, 0, checkpoint)
    assert len(epochs_evaluated) == CONFIG.epochs - 1  # only epochs 2 and 3 ran again
    assert resumed["history"] == reference["history"]  # and exactly as if never interrupted


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    a = Checkpoint(tmp_path, "run", {"z_dim": 2})
    b = Checkpoint(tmp_path, "run", {"z_dim": 3})
    assert a.path != b.path
    a.save({"epoch": 1})
    assert b.load() is None and a.load() == {"epoch": 1}


def test_a_damaged_checkpoint_starts_over(tmp_path, capsys):
    c = Checkpoint(tmp_path, "run", {})
    c.path.write_bytes(b"not a checkpoint")
    assert c.load() is None
    assert "unreadable" in capsys.readouterr().out


def test_the_annotator_is_the_same_for_the_same_seed(mnist, monkeypatch):
    from lib import vae_experiment

    splits = vae_experiment.make_splits(mnist, n_train=100, n_val=20, n_annotator=300, n_test=100, seed=0)

    def weights():
        torch.rand(7)  # whatever the global generator went through before must not matter
        annotator, _ = vae_experiment.train_annotator(splits, epochs=1, seed=3, device=CPU, checkpoint=Checkpoint(None, "a", {}))
        return [p.clone() for p in annotator.model.state_dict().values()]

    for a, b in zip(weights(), weights()):
        assert torch.equal(a, b)


def test_a_resumed_run_says_so(small, tmp_path):
    checkpoint = Checkpoint(tmp_path, "run", {"case": "says"})
    assert train(small, 0, checkpoint)["resumed_at_epoch"] == 0
    assert train(small, 0, checkpoint)["resumed_at_epoch"] == CONFIG.epochs + 1  # finished: nothing left to train


def test_fit_classifier_with_sgd_onecycle_a_loss_and_augmentation_resumes_bit_identically(tmp_path):
    from lib.data import Split, random_crop_flip
    from lib.models import FeatureClassifier, FeatureClassifierConfig

    g = torch.Generator().manual_seed(0)
    data = Split(torch.randint(0, 256, (96, 3, 16, 16), generator=g, dtype=torch.uint8), torch.arange(96) % 3)

    def fit(checkpoint=None, stop_after_batches=None):
        torch.manual_seed(0)
        model = FeatureClassifier(FeatureClassifierConfig(width=4, num_classes=3, head="soc", num_features=2))
        calls = []

        def augment(x, gen):
            calls.append(1)
            if len(calls) == stop_after_batches:
                raise KeyboardInterrupt("simulated interruption during epoch 3")
            return random_crop_flip(x, 2, gen)

        report = fit_classifier(model, data, epochs=3, lr=0.05, batch_size=32, seed=1, device=CPU, optimiser="sgd", weight_decay=5e-4,
                                schedule="onecycle", loss_fn=FeatureClassifier.loss, augment=augment, checkpoint=checkpoint)
        return model, report

    straight, _ = fit()
    ckpt = Checkpoint(tmp_path, "soc", {"case": "resume"})
    try:
        fit(ckpt, stop_after_batches=7)  # 3 batches an epoch: stops inside the third epoch
    except KeyboardInterrupt:
        pass
    resumed, report = fit(ckpt)  # the same command again
    assert report.resumed and len(report.losses) == 3
    for (name, p), q in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p, q), name


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
