"""Chapter 4's random-image baseline and reconstruction accuracy against naive re-computations, with
scripted annotators and judges whose every answer the test knows."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lib.cluster_labelling import Annotator, LabellingConfig, random_labelling, reconstruction_accuracy, train_labelling_vae
from lib.data import Split


class IdReader(nn.Module):
    """A scripted annotator for images whose first pixel is an id v (0..255): it says ``v % 3`` (right or
    wrong, whatever the image's true label) with logits ``[0, 0, 0]`` raised by ``1 + (v % 5) / 10`` at
    that label; it records every batch it is shown."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.shown = []

    def forward(self, images):
        self.shown.append(images.clone())
        v = torch.round(images.flatten(1)[:, 0] * 255).long()
        logits = torch.zeros(len(v), 3) + self.dummy
        logits[torch.arange(len(v)), v % 3] += 1 + (v % 5).float() / 10
        return logits


def id_answer(v: int) -> tuple[int, float]:
    """What :class:`IdReader` says about image v, by hand: its label and its softmax maximum."""
    a = 1 + (v % 5) / 10
    return v % 3, math.exp(a) / (math.exp(a) + 2)


def id_images(n: int, shape=(1, 1, 2)) -> torch.Tensor:
    images = torch.zeros(n, *shape, dtype=torch.uint8)
    images.view(n, -1)[:, 0] = torch.arange(n, dtype=torch.uint8)
    return images


def test_random_labelling_labels_the_naively_drawn_images_with_the_annotators_answers():
    n, k, seed = 40, 7, 5
    reader = IdReader()
    annotator = Annotator(reader)
    annotator.labels_given = 3  # labels spent earlier in the run
    out = random_labelling(n, id_images(n), annotator, k, seed)
    pick = np.random.default_rng(seed).permutation(n)[:k].tolist()  # the naive draw
    assert len(set(pick)) == k and annotator.labels_given == 3 + k and out.labels_given == k
    shown = torch.cat(reader.shown)
    assert torch.round(shown[:, 0, 0, 0] * 255).long().tolist() == pick  # those images, in that order, in [0, 1]
    assert shown.max() <= 1 and torch.equal(out.centre_images, shown)
    for i in range(n):
        if i in pick:
            label, confidence = id_answer(i)
            assert int(out.targets[i]) == label and float(out.weights[i]) == pytest.approx(confidence, rel=1e-6)
        else:
            assert int(out.targets[i]) == -1 and float(out.weights[i]) == 0.0
    assert out.k == 0 and out.centre_level.tolist() == [1] * k and len(out.centres) == 0


def test_random_labelling_with_another_seed_draws_other_images_but_as_many():
    n = 50
    a = random_labelling(n, id_images(n), Annotator(IdReader()), 10, seed=0)
    b = random_labelling(n, id_images(n), Annotator(IdReader()), 10, seed=1)
    pa, pb = (set(torch.nonzero(x.targets >= 0).flatten().tolist()) for x in (a, b))
    assert pa == set(np.random.default_rng(0).permutation(n)[:10].tolist()) and pb == set(np.random.default_rng(1).permutation(n)[:10].tolist())
    assert len(pa) == len(pb) == 10 and pa != pb


class Reader28(nn.Module):
    """:class:`IdReader` for 28 x 28 images (the labelling VAE's size); spends nothing by itself."""

    def __init__(self):
        super().__init__()
        self.inner = IdReader()

    def forward(self, images):
        return self.inner(images)


def test_the_random_baseline_spends_its_labels_once_over_a_whole_training():
    n, k = 48, 9
    g = torch.Generator().manual_seed(0)
    images = id_images(n, (1, 28, 28))
    images.view(n, -1)[:, 1:] = torch.randint(0, 256, (n, 783), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 3
    data = Split(images, labels)
    config = LabellingConfig(z_dim=2, hidden=(16, 8, 4), epochs=3, unsupervised_epochs=1, batch_size=16, gamma=1.0,
                             label_source="random", random_labels=k)
    annotator = Annotator(Reader28())
    out = train_labelling_vae(config, data, data, data, annotator, Annotator(Reader28()), seed=4, device=torch.device("cpu"), checkpoint=None)
    assert annotator.labels_given == k and out["labels_spent"] == k  # labelled once, after the first epoch, not every epoch
    rows = [r for r in out["history"] if "labels_given" in r]
    assert [r["epoch"] for r in rows] == [1] and rows[0]["labels_given"] == k
    # the images labelled are the naive draw for the run's seed; their purity is the reader's hit rate on them
    pick = np.random.default_rng(4).permutation(n)[:k].tolist()
    assert rows[0]["labelled_fraction"] == pytest.approx(k / n)
    assert rows[0]["label_purity"] == pytest.approx(sum(id_answer(i)[0] == i % 3 for i in pick) / k)


class NearestLevelJudge(nn.Module):
    """A scripted judge: reads the first pixel v in [0, 1] as the digit whose level k / 9 is nearest."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        v = images.flatten(1)[:, :1]
        return -((v - torch.arange(10) / 9) ** 2) + self.dummy


class ShiftVAE(nn.Module):
    """A stand-in VAE: the latent mean is the image, the log-variance a decoy that a reconstruction
    must not use, and the decoder adds ``shift`` to the first pixel."""

    def __init__(self, shift: float):
        super().__init__()
        self.dummy, self.shift = nn.Parameter(torch.zeros(1)), shift

    def encode(self, x):
        return x.flatten(1), 1 - x.flatten(1)

    def decode(self, z):
        out = z.clone()
        out[:, 0] += self.shift
        return out.view(-1, 1, 1, 2)


def test_reconstruction_accuracy_is_the_share_the_judge_reads_right_by_a_naive_loop():
    digits = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 3, 3]
    labels = [0, 1, 2, 3, 9, 5, 0, 7, 8, 1, 3, 4]  # some labels disagree with the image
    images = torch.tensor([[round(255 * d / 9), 200] for d in digits], dtype=torch.uint8).view(-1, 1, 1, 2)
    val = Split(images, torch.tensor(labels))
    # by hand: faithful, the judge reads every digit and agrees with 8 labels; brightened by one level
    # (9 stays 9), it reads d + 1 and agrees only with the image of a 3 labelled 4
    for shift, by_hand in ((0.0, 8 / 12), (1 / 9, 1 / 12)):
        naive = 0
        for d, y in zip(digits, labels):
            v = round(255 * d / 9) / 255 + shift
            naive += min(range(10), key=lambda k: abs(v - k / 9)) == y
        judge = Annotator(NearestLevelJudge())
        assert naive / len(digits) == pytest.approx(by_hand)
        assert reconstruction_accuracy(ShiftVAE(shift), judge, val) == pytest.approx(by_hand)
        assert judge.labels_given == 0  # judging spends no label


def test_labels_spent_leave_out_the_last_round_which_trains_nothing():
    """The round after the last epoch is for the figures only: it is shown in the history, and its
    labels are not spent (the random baselines get exactly the labels the method spent)."""
    n = 48
    g = torch.Generator().manual_seed(0)
    images = id_images(n, (1, 28, 28))
    images.view(n, -1)[:, 1:] = torch.randint(0, 256, (n, 783), generator=g, dtype=torch.uint8)
    data = Split(images, torch.arange(n) % 3)
    config = LabellingConfig(z_dim=2, hidden=(16, 8, 4), epochs=2, unsupervised_epochs=1, batch_size=16, gamma=1.0, k_min=2, k_max=4,
                             elbow_sample=48)
    annotator = Annotator(Reader28())
    out = train_labelling_vae(config, data, data, data, annotator, Annotator(Reader28()), seed=0, device=torch.device("cpu"), checkpoint=None)
    rounds = [r for r in out["history"] if "labels_given" in r]
    assert [(r["epoch"], r["used_for_training"]) for r in rounds] == [(1, True), (2, False)]
    assert rounds[1]["labels_given"] > 0 and annotator.labels_given == rounds[0]["labels_given"] + rounds[1]["labels_given"]
    assert out["labels_spent"] == rounds[0]["labels_given"]


def test_eq3_trains_the_class_head_and_eq1_alone_does_not():
    """Eq. (1) alone never reaches the class head (its gradient is None, so Adam leaves it at its
    initial values): a plain VAE's head ends where it started. Eq. (3)'s weighted cross-entropy, in
    the epoch after the first labelling, moves it."""
    from lib.models.vae import LabellingVAE, VAEConfig
    from lib.training import seed_everything

    n = 48
    g = torch.Generator().manual_seed(0)
    images = id_images(n, (1, 28, 28))
    images.view(n, -1)[:, 1:] = torch.randint(0, 256, (n, 783), generator=g, dtype=torch.uint8)
    data = Split(images, torch.arange(n) % 3)
    seed_everything(3)
    initial = LabellingVAE(VAEConfig(z_dim=2, hidden=(16, 8, 4))).head.weight.detach().clone()  # what each run starts from
    heads = {}
    for gamma in (0.0, 1.0):  # a plain VAE (Eq. 1 for both epochs); Eq. (1) then Eq. (3) after the labelling that ends epoch 1
        config = LabellingConfig(z_dim=2, hidden=(16, 8, 4), epochs=2, unsupervised_epochs=1, batch_size=16, gamma=gamma,
                                 label_source="random", random_labels=12)
        out = train_labelling_vae(config, data, data, data, Annotator(Reader28()), Annotator(Reader28()), seed=3, device=torch.device("cpu"),
                                  checkpoint=None)
        heads[gamma] = out["model"].head.weight.detach()
    assert torch.equal(heads[0.0], initial), "Eq. (1) alone moved the class head"
    assert not torch.allclose(heads[1.0], initial), "Eq. (3)'s classification term did not reach the class head"


def test_random_labelling_round_after_round_adds_the_next_images_of_one_draw():
    n = 30
    annotator = Annotator(IdReader())
    first = random_labelling(n, id_images(n), annotator, 4, seed=2)
    second = random_labelling(n, id_images(n), annotator, 5, seed=2, previous=first)
    order = np.random.default_rng(2).permutation(n).tolist()  # the naive draw
    assert set(torch.nonzero(first.targets >= 0).flatten().tolist()) == set(order[:4])
    assert set(torch.nonzero(second.targets >= 0).flatten().tolist()) == set(order[:9])  # kept, and the next five added
    assert torch.round(second.centre_images[:, 0, 0, 0] * 255).long().tolist() == order[4:9]  # only the new ones were shown
    assert annotator.labels_given == 9 and second.labels_given == 5
    for i in order[:9]:
        label, confidence = id_answer(i)
        assert int(second.targets[i]) == label and float(second.weights[i]) == pytest.approx(confidence, rel=1e-6)


def test_the_random_control_labels_as_many_new_images_each_round_as_its_schedule_says():
    n, schedule = 48, (3, 5)
    g = torch.Generator().manual_seed(0)
    images = id_images(n, (1, 28, 28))
    images.view(n, -1)[:, 1:] = torch.randint(0, 256, (n, 783), generator=g, dtype=torch.uint8)
    data = Split(images, torch.arange(n) % 3)
    config = LabellingConfig(z_dim=2, hidden=(16, 8, 4), epochs=4, unsupervised_epochs=1, batch_size=16, gamma=1.0,
                             label_source="random", random_labels=schedule)
    annotator = Annotator(Reader28())
    out = train_labelling_vae(config, data, data, data, annotator, Annotator(Reader28()), seed=4, device=torch.device("cpu"), checkpoint=None)
    rows = [r for r in out["history"] if "labels_given" in r]
    assert [(r["epoch"], r["labels_given"]) for r in rows] == [(1, 3), (2, 5)]  # no third round: the schedule has two
    assert annotator.labels_given == out["labels_spent"] == 8
    order = np.random.default_rng(4).permutation(n).tolist()
    assert rows[0]["labelled_fraction"] == pytest.approx(3 / n) and rows[1]["labelled_fraction"] == pytest.approx(8 / n)
    assert rows[1]["label_purity"] == pytest.approx(sum(id_answer(i)[0] == i % 3 for i in order[:8]) / 8)


def test_the_oracle_arm_trains_with_majority_labels_and_spends_one_label_a_centre():
    n = 48
    g = torch.Generator().manual_seed(0)
    images = id_images(n, (1, 28, 28))
    images.view(n, -1)[:, 1:] = torch.randint(0, 256, (n, 783), generator=g, dtype=torch.uint8)
    data = Split(images, torch.arange(n) % 3)
    config = LabellingConfig(z_dim=2, hidden=(16, 8, 4), epochs=2, unsupervised_epochs=1, batch_size=16, gamma=1.0, fixed_k=4, oracle=True)
    reader = Reader28()
    out = train_labelling_vae(config, data, data, data, Annotator(reader), Annotator(Reader28()), seed=0, device=torch.device("cpu"), checkpoint=None)
    rounds = [r for r in out["history"] if "labels_given" in r]
    assert [r["labels_given"] for r in rounds] == [4, 4] and [r["second_level"] for r in rounds] == [0, 0]
    assert all(r["annotator_agreement"] == 1.0 for r in rounds) and not reader.inner.shown  # the simulated annotator saw nothing


def test_diminishing_returns_is_the_gain_per_doubling_below_minus_above_by_hand():
    from lib.vae_experiment import diminishing_returns

    accuracy = {2: 0.50, 10: 0.70, 20: 0.72}
    # 0.20 over log2(5) = 2.3219 doublings, minus 0.02 over one doubling
    assert diminishing_returns(accuracy, 2, 10, 20) == pytest.approx(0.20 / 2.321928 - 0.02, rel=1e-5)
    assert diminishing_returns({2: 0.5, 10: 0.5 + 0.1 * math.log2(5), 20: 0.6 + 0.1 * math.log2(5)}, 2, 10, 20) == pytest.approx(0.0, abs=1e-12)
    assert diminishing_returns({2: 0.5, 10: 0.55, 20: 0.75}, 2, 10, 20) < 0  # growing returns
    with pytest.raises(ValueError):
        diminishing_returns(accuracy, 10, 2, 20)


def chapter_settings(**changes):
    from lib.vae_experiment import Settings

    return Settings(**{"profile": "full", "results_root": "/tmp/unused", **changes})


@pytest.mark.parametrize("bad", [dict(budget_ks=(10,), paper_k=13), dict(paper_k=10), dict(beta_control=5.0), dict(beta_control=-1.0),
                                 dict(budget_ks=(10, 10))])
def test_chapter_settings_refuse_a_judged_arm_that_is_not_run_and_a_beta_control_equal_to_beta(bad):
    with pytest.raises(ValueError):
        chapter_settings(**bad)


def test_the_work_estimate_counts_every_vae_the_plan_lists(tmp_path):
    """lib.budget bounds the quick profile by ``work``: it must count the VAEs that the plan trains, arm by arm."""
    from lib.data import locate
    from lib.units import Records
    from lib.vae_experiment import plan, work

    if locate("mnist") is None:
        pytest.skip("MNIST is in no data root")
    records = Records(tmp_path / "units", "test", tmp_path / "checkpoints", stamp={})
    for changes in ({}, dict(budget_ks=(10, 16), paper_k=10, oracle=True, beta_control=1.0, z_dims=(2, 10, 20)),
                    dict(budget_ks=(10,), z_dims=(2, 5))):
        s = chapter_settings(seeds=(0, 1, 2), **changes)
        vaes = [u for u in plan(s, records) if u.name not in ("annotator", "judge") and not u.name.startswith("labels-alone")]
        per_vae = s.data.n_train * s.method.epochs * sum(a * b for a, b in zip([784, *s.method.hidden, s.method.z_dim][:-1],
                                                                             [784, *s.method.hidden, s.method.z_dim][1:])) / 468_000
        readers = 2 * (s.data.n_annotator + s.data.n_judge) * s.annotator.epochs
        assert (work(s) - readers) / per_vae == pytest.approx(len(vaes)), changes
        assert len({u.name for u in vaes}) == len(vaes)  # every unit named once
