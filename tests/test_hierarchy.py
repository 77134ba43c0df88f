"""Chapter 3: class weights against scikit-learn, Eqs. (1)-(5) against a naive loop, metrics, the stand-in data."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from sklearn.utils.class_weight import compute_class_weight

from lib import hierarchy_experiment as experiment
from lib.data import Dataset, Split
from lib.hierarchy import class_weights, inconsistency, level_metrics, novelty_auroc
from lib.losses import two_level_loss
from lib.models.hierarchical import HierarchicalConfig, HierarchicalNet
from lib.run import read_defaults

CHAPTER = Path(__file__).resolve().parents[1] / "chapters/03_hierarchical_transfer_learning.py"


def test_class_weights_are_sklearns_balanced_and_the_novel_slot_gets_their_average():
    y = torch.tensor([0] * 10 + [1] * 30 + [2] * 5)
    w = class_weights(y, num_outputs=4, novel=3)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y.numpy())
    np.testing.assert_allclose(w[:3].numpy(), expected, rtol=1e-6)
    assert w[3] == pytest.approx(expected.mean())
    with pytest.raises(ValueError, match="no training example"):
        class_weights(y, num_outputs=5, novel=4)  # output 3 has no image and is not the novel slot


def test_two_level_loss_is_eqs_1_2_and_5_by_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    sup, sub = torch.randn(6, 3, generator=g), torch.randn(6, 5, generator=g)
    y_sup, y_sub = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 2, 3, 1, 0])
    w_sup, w_sub = torch.tensor([0.5, 1.0, 2.0]), torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])

    def eq1(logits, y, w):  # -(1/N) sum_i w_{y_i} log softmax(s_i)_{y_i}
        return -sum(w[y[i]] * torch.log(torch.exp(logits[i, y[i]]) / torch.exp(logits[i]).sum()) for i in range(len(y))) / len(y)

    ours = two_level_loss(sup, sub, y_sup, y_sub, super_weights=w_sup, sub_weights=w_sub)
    torch.testing.assert_close(ours, eq1(sup, y_sup, w_sup) + eq1(sub, y_sub, w_sub))  # Eq. (2)
    ones3, ones5 = torch.ones(3), torch.ones(5)
    ours5 = two_level_loss(sup, sub, y_sup, y_sub, level_weights=(0.3, 0.7))
    torch.testing.assert_close(ours5, 0.3 * eq1(sup, y_sup, ones3) + 0.7 * eq1(sub, y_sub, ones5))  # Eq. (5)
    torch.testing.assert_close(two_level_loss(None, sub, y_sup, y_sub), F.cross_entropy(sub, y_sub))  # flat: sub-class only


def test_level_metrics_match_scikit_learn_and_ignore_classes_absent_from_the_test_set():
    t, p = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 1, 1, 3, 2])  # output 3 never a true class
    m = level_metrics(t, p, num_classes=4)
    assert m["F1 (macro)"] == pytest.approx(f1_score(t, p, labels=[0, 1, 2], average="macro", zero_division=0))
    assert m["F1 (weighted)"] == pytest.approx(f1_score(t, p, labels=[0, 1, 2], average="weighted", zero_division=0))
    assert m["accuracy"] == pytest.approx(4 / 6) and len(m["per-class F1"]) == 4 and np.array(m["confusion"]).sum() == 6


def test_inconsistency_counts_sub_classes_under_another_super_class():
    sub_to_super = torch.tensor([0, 0, 1, 1])
    assert inconsistency(torch.tensor([0, 1, 1, 0]), torch.tensor([1, 2, 0, 3]), sub_to_super) == pytest.approx(0.5)  # images 2 and 3


def test_novelty_auroc_rewards_high_scores_on_novel_images():
    novel = torch.tensor([False, False, True, True])
    assert novelty_auroc({"s": torch.tensor([0.1, 0.2, 0.8, 0.9])}, novel)["s"] == 1.0
    assert novelty_auroc({"s": torch.tensor([0.9, 0.8, 0.2, 0.1])}, novel)["s"] == 0.0


@pytest.mark.parametrize("profile, ratio, expected", [("none", 10, [100] * 4), ("long-tail", 8, [100, 50, 25, 12]), ("step", 5, [100, 100, 20, 20])])
def test_imbalance_profiles(profile, ratio, expected):
    assert sorted(experiment.imbalance_counts(4, 100, profile, ratio, seed=0), reverse=True) == sorted(expected, reverse=True)


def fake_animals() -> Dataset:
    supers = ["bird"] * 4 + ["dog"] * 6 + ["animal"] * 8
    names = [f"{s}{i}" for i, s in enumerate(supers)]
    labels = torch.arange(18).repeat_interleave(20)
    images = labels[:, None, None, None].repeat(1, 3, 8, 8).to(torch.uint8)  # every pixel holds the class index
    test_labels = torch.arange(18).repeat_interleave(5)
    return Dataset("fake", Split(images, labels), Split(test_labels[:, None, None, None].repeat(1, 3, 8, 8).to(torch.uint8), test_labels),
                   names, {}, superclasses=supers)


def test_the_stand_in_holds_the_novel_sub_class_out_of_training_and_keeps_labels_true():
    ds = fake_animals()
    h = experiment.build_hierarchy(ds, unseen_subclasses=3, novel_subclass="dog5", seed=0)
    assert h.sub_names[-1] == "dog5" and h.sub_to_super.tolist().count(1) == 6 and h.sub_to_super.tolist().count(2) == 3
    data = experiment.Settings(max_train_per_class=20, imbalance="long-tail", imbalance_ratio=4.0, input_size=8).data
    train, val, test, as_trained = experiment.make_splits(ds, h, data, seed=0)
    assert h.novel not in train.labels.tolist() + val.labels.tolist() + as_trained.labels.tolist() and (test.labels == h.novel).sum() == 5
    for split in (train, val, test, as_trained):  # the pixel value is the source class: every label points to its own images
        assert torch.equal(split.images[:, 0, 0, 0].long(), torch.tensor(h.source)[split.labels])
    pool = torch.bincount(torch.cat([train.labels, val.labels]))
    assert max(pool) == 20 and min(pool) == 5
    # the second test set follows the training's proportions: 5 test images for the largest sub-class, round(5 n / 20) for the others
    assert torch.bincount(as_trained.labels, minlength=h.novel)[: h.novel].tolist() == [max(1, round(5 * int(n) / 20)) for n in pool]
    with pytest.raises(ValueError, match="not a Tiny-ImageNet animal class"):
        experiment.build_hierarchy(ds, 3, "unicorn", 0)


@pytest.mark.parametrize("backbone", ["resnet_mini", "convnext_mini"])
def test_both_mini_backbones_give_two_heads_and_a_flat_one(backbone):
    x = torch.rand(2, 3, 32, 32)
    sup, sub = HierarchicalNet(HierarchicalConfig(backbone=backbone, num_sub=7, hidden=16))(x)
    assert sup.shape == (2, 3) and sub.shape == (2, 7)
    sup, sub = HierarchicalNet(HierarchicalConfig(backbone=backbone, num_sub=7, hidden=16, heads="flat"))(x)
    assert sup is None and sub.shape == (2, 7)
    with pytest.raises(ValueError, match="no pretrained weights"):
        HierarchicalNet(HierarchicalConfig(backbone=backbone), weights="DEFAULT")


def test_fixed_stopping_trains_every_epoch_cuts_the_rate_on_a_plateau_and_keeps_the_last_weights():
    ds = fake_animals()
    h = experiment.build_hierarchy(ds, 3, "dog5", 0)
    train, val, _, _ = experiment.make_splits(ds, h, experiment.Settings(max_train_per_class=20, input_size=32).data, seed=0)
    recipe = experiment.HierarchyRecipe(epochs=6, lr=3e-2, batch_size=16, patience=1, stopping="fixed")
    torch.manual_seed(0)
    model = HierarchicalNet(HierarchicalConfig(backbone="convnext_mini", num_sub=len(h.sub_names), hidden=8, input_size=32))
    result = experiment.fit_two_heads(model, train, val, h, recipe, weighted=False, seed=0, device=torch.device("cpu"), checkpoint=None, desc="t")
    losses, rates = result.history["validation loss"], result.history["learning rate"]
    assert len(losses) == 6 and result.best_epoch == 6
    # by hand: with patience 1, the rate is cut after every epoch without a new lowest loss (the ResNet
    # would stop there), and the cut shows in that epoch's "learning rate after"
    expected, after, rate, best, bad = [], [], 3e-2, float("inf"), 0
    for loss in losses:
        expected.append(rate)
        if loss < best * (1 - 1e-4):
            best, bad = loss, 0
        else:
            bad += 1
            if bad >= recipe.patience:
                rate, bad = rate * 0.1, 0
        after.append(rate)
    assert rates == pytest.approx(expected) and result.history["learning rate after"] == pytest.approx(after)
    assert min(after) < after[0] or min(losses) == losses[-1]  # this run plateaus at least once (else the check above is weak)
    out = experiment.outputs(model, val.images, h)
    assert float(two_level_loss(out["super"], out["sub"], h.sub_to_super[val.labels], val.labels)) == pytest.approx(losses[-1], rel=1e-4)


def test_path_accuracy_and_near_misses_against_a_naive_loop():
    from lib.hierarchy import near_miss_share, path_accuracy

    g = torch.Generator().manual_seed(0)
    sub_to_super = torch.tensor([0, 0, 1, 1, 1, 2])
    true_sub, pred_sub = torch.randint(0, 6, (200,), generator=g), torch.randint(0, 6, (200,), generator=g)
    true_super, pred_super = sub_to_super[true_sub], torch.randint(0, 3, (200,), generator=g)
    both, near, wrong = 0, 0, 0
    for ts, ps, tp, pp in zip(true_sub.tolist(), pred_sub.tolist(), true_super.tolist(), pred_super.tolist()):
        both += ts == ps and tp == pp
        if ts != ps:
            wrong += 1
            near += sub_to_super[ps] == sub_to_super[ts]
    assert path_accuracy(true_super, true_sub, pred_super, pred_sub) == pytest.approx(both / 200)
    assert near_miss_share(true_sub, pred_sub, sub_to_super) == pytest.approx(near / wrong)
    assert np.isnan(near_miss_share(true_sub, true_sub, sub_to_super))  # no mistake, no share


def test_the_other_animals_share_no_class_with_the_stand_in():
    ds = fake_animals()
    h = experiment.build_hierarchy(ds, 3, "dog5", 0)
    source, what = experiment.pretraining_source("other-animals", ds, h)
    original = source.images[:, 0, 0, 0].long().unique().tolist()  # the pixel value is the dataset's class index
    assert set(original).isdisjoint(h.source) and len(original) == 18 - len(h.source) == int(source.labels.max()) + 1
    assert str(18 - len(h.source)) in what


@pytest.mark.parametrize("change, message", [({"imbalance": "zipf"}, "imbalance 'zipf' is unknown"), ({"initialisation": "simclr"}, "initialisation"),
                                             ({"resnet_backbone": "convnext_tiny"}, "must be a ResNet"), ({"max_train_per_class": 600}, "at most 500"),
                                             ({"level_weights": [1.0]}, "two non-negative numbers"), ({"keep_known": 1.0}, "keep_known"),
                                             ({"patience": 0}, "patience=0"), ({"jitter": 1.5}, "jitter")])
def test_bad_parameters_are_refused(change, message):
    p = read_defaults(CHAPTER)
    experiment.Settings(**p)
    with pytest.raises(ValueError, match=message):
        experiment.Settings(**(p | change))


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience():
    ds = fake_animals()
    h = experiment.build_hierarchy(ds, 3, "dog5", 0)
    train, val, _, _ = experiment.make_splits(ds, h, experiment.Settings(max_train_per_class=20, input_size=32).data, seed=0)
    recipe = experiment.HierarchyRecipe(epochs=8, lr=0.3, batch_size=16, patience=2)  # a high rate: the validation loss goes up soon
    torch.manual_seed(0)
    model = HierarchicalNet(HierarchicalConfig(backbone="convnext_mini", num_sub=len(h.sub_names), hidden=8, input_size=32))
    result = experiment.fit_two_heads(model, train, val, h, recipe, weighted=True, seed=0, device=torch.device("cpu"), checkpoint=None, desc="t")
    losses = result.history["validation loss"]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    # it stopped early, so the last epoch is not the best: keeping the last weights would fail below
    assert len(losses) < recipe.epochs and len(losses) - result.best_epoch == recipe.patience, f"this run did not stop early: {losses}"
    # the weights kept are the best epoch's: the model's validation loss now is the lowest one seen
    out = experiment.outputs(model, val.images, h)
    weights = (class_weights(train.labels, len(h.sub_names), novel=h.novel), class_weights(h.sub_to_super[train.labels], 3))
    kept = float(two_level_loss(out["super"], out["sub"], h.sub_to_super[val.labels], val.labels, super_weights=weights[1], sub_weights=weights[0]))
    assert kept == pytest.approx(min(losses), rel=1e-4)


def test_both_mini_backbones_downsample_their_input_alike():
    """The fair comparison's premise: the same stem downsampling (2x) and the same final map (16x) for both."""
    from lib.models.hierarchical import backbone

    x = torch.rand(2, 3, 64, 64)
    resnet, _ = backbone("resnet_mini")
    convnext, _ = backbone("convnext_mini")
    assert resnet[:3](x).shape[-2:] == convnext.features[0](x).shape[-2:] == (32, 32)  # the stems
    assert resnet[:-2](x).shape[-2:] == convnext.features(x).shape[-2:] == (4, 4)  # before pooling


def test_the_convnext_trained_by_the_resnets_recipe_differs_from_the_paper_resnet_only_in_its_backbone():
    s = experiment.Settings(**read_defaults(CHAPTER))
    a, b = experiment.RESNET_PAPER, experiment.CONVNEXT_AS_RESNET
    assert (a.weighted, a.pretrained, a.heads) == (b.weighted, b.pretrained, b.heads) and b.family == "ConvNeXt"
    assert s.recipe_of(b) == s.recipe_of(a) == s.resnet and s.recipe_of(b).stopping == "early"  # best-validation weights kept
    assert s.recipe_of(experiment.CONVNEXT_PAPER) == s.convnext  # the paper's ConvNeXt keeps its own recipe
    ca, cb = s.config_of(a, 16), s.config_of(b, 16)
    assert ca.backbone == "resnet_mini" and cb.backbone == "convnext_mini" and cb.head_family == "ResNet"
    heads = [type(m) for m in HierarchicalNet(cb).sub_head]
    assert heads == [type(m) for m in HierarchicalNet(ca).sub_head] == [torch.nn.Linear, torch.nn.ReLU, torch.nn.Dropout, torch.nn.Linear]
    assert torch.nn.Dropout not in [type(m) for m in HierarchicalNet(s.config_of(experiment.CONVNEXT_PAPER, 16)).sub_head]


def test_work_counts_each_variant_at_its_own_recipes_epochs():
    s = experiment.Settings(**read_defaults(CHAPTER))
    more = experiment.Settings(**(read_defaults(CHAPTER) | {"resnet_epochs": s.resnet_epochs + 1}))
    images = len(s.run.seeds) * s.max_train_per_class * (10 + s.unseen_subclasses) * (s.input_size / 32) ** 2
    per_epoch = (experiment.work(more) - experiment.work(s)) / images
    # one more ResNet-recipe epoch: the four ResNets (cost 1) and the ConvNeXt trained by the ResNet's recipe
    assert per_epoch == pytest.approx(4 * 1.0 + experiment.BACKBONE_COST["convnext_mini"])


def test_a_head_family_other_than_the_two_is_refused():
    with pytest.raises(ValueError, match="head_family 'VGG'"):
        HierarchicalConfig(backbone="convnext_mini", num_sub=4, head_family="VGG")
