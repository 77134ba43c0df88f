"""Chapter 3's test-set evaluation: ``evaluate``'s TestResult on hand-made logits (metrics by hand and by
scikit-learn, detector scores by a naive loop), ``flag_rate`` against a naive count, ``level_metrics``'
precision against scikit-learn, and a flat model's super-class outputs against the softmax summed by hand."""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, roc_auc_score
from torch import nn

from lib import hierarchy_experiment as experiment
from lib.data import Split
from lib.hierarchy import flag_rate, level_metrics
from lib.models.hierarchical import HierarchicalConfig, HierarchicalNet
from lib.training import Recipe

# Sub-classes: two birds, a dog, an unseen animal, and the novel slot (a dog) last.
SUB_TO_SUPER = torch.tensor([0, 0, 1, 2, 1])
H = experiment.Hierarchy(["bird0", "bird1", "dog0", "animal0", "novel dog"], SUB_TO_SUPER, [10, 11, 12, 13, 14])
RECIPE = Recipe(epochs=1, lr=1e-3, batch_size=8)


class ScriptedNet(nn.Module):
    """A stand-in for HierarchicalNet: an image's values are its features; the first three are the
    super-class logits, the next five the sub-class logits (a flat net has no super-class head)."""

    def __init__(self, flat: bool = False):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.super_head = None if flat else nn.Identity()

    def forward_features(self, x):
        return x.flatten(1)

    def forward_head(self, features):
        return (None if self.super_head is None else features[:, :3]), features[:, 3:8]


def as_images(values: torch.Tensor, labels: list[int]) -> Split:
    """Float "images" whose batches (divided by 255) give ``values`` back."""
    return Split((values.double() * 255).float().view(len(values), 1, 1, -1), torch.tensor(labels))


def read_back(split: Split) -> np.ndarray:
    """What the network sees of a split: its images divided by 255, as batches give them."""
    return (split.images.float() / 255).flatten(1).double().numpy()


def scripted(pred_super: list[int], pred_sub: list[int], seed: int) -> torch.Tensor:
    """Logits whose arg-maxes are the given predictions (a margin of 3 over noise below 0.5)."""
    g = torch.Generator().manual_seed(seed)
    sup = 0.5 * torch.rand(len(pred_super), 3, generator=g) + 3 * torch.eye(3)[pred_super]
    sub = 0.5 * torch.rand(len(pred_sub), 5, generator=g) + 3 * torch.eye(5)[pred_sub]
    return torch.cat([sup, sub], 1)


#            i:  0  1  2  3  4  5  6  7
TRUE_SUB = [0, 1, 2, 3, 4, 4, 0, 2]  # images 4 and 5 are of the novel sub-class
PRED_SUPER = [0, 0, 1, 2, 1, 0, 2, 1]
PRED_SUB = [0, 0, 2, 2, 4, 2, 3, 2]


def splits(flat_seed: int = 0) -> experiment.Splits:
    g = torch.Generator().manual_seed(1)
    train_labels = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    train = as_images(torch.randn(12, 8, generator=g) + 2 * torch.eye(8)[torch.tensor(train_labels) + 3], train_labels)
    val_labels = [0, 1, 2, 3, 0, 1, 2, 3, 0, 2]
    val = as_images(torch.randn(10, 8, generator=g), val_labels)
    test = as_images(scripted(PRED_SUPER, PRED_SUB, seed=2), TRUE_SUB)
    as_trained = as_images(scripted([0, 0, 1, 2], [0, 1, 3, 3], seed=3), [0, 1, 2, 3])  # sub-classes right on 3 of 4
    return experiment.Splits(train, val, test, as_trained)


def naive_scores(split: Split, train: Split) -> dict[str, np.ndarray]:
    """The two detectors by a loop over images: 1 - the largest softmax probability over the four training
    sub-classes; the distance of the L2-normalised features to the nearest training sub-class centroid."""
    x, xt = read_back(split), read_back(train)
    unit = lambda v: v / math.sqrt(sum(a * a for a in v))  # noqa: E731
    centroids = [np.mean([unit(xt[i]) for i in range(len(xt)) if int(train.labels[i]) == k], axis=0) for k in range(4)]
    max_prob, distance = [], []
    for row in x:
        exps = [math.exp(v) for v in row[3:7]]  # the known sub-classes' logits only
        max_prob.append(1 - max(exps) / sum(exps))
        f = unit(row)
        distance.append(min(math.sqrt(sum((a - b) ** 2 for a, b in zip(f, c))) for c in centroids))
    return {experiment.MAX_PROBABILITY: np.array(max_prob), experiment.CENTROID_DISTANCE: np.array(distance)}


def test_evaluate_gives_the_hand_counted_metrics_of_a_scripted_two_headed_net():
    sp = splits()
    r = experiment.evaluate(ScriptedNet(), sp, H, RECIPE, keep_known=0.8)
    true_super = [0, 0, 1, 2, 1, 1, 0, 1]
    # counted by hand from the table above
    assert r.super["accuracy"] == pytest.approx(6 / 8)  # wrong at images 5 and 6
    assert r.sub["accuracy"] == pytest.approx(4 / 8)  # right at images 0, 2, 4, 7
    assert r.inconsistency == pytest.approx(2 / 8)  # image 3 (a dog under "unseen"), image 5 (a dog under "bird")
    assert r.path_accuracy == pytest.approx(4 / 8)
    assert r.near_misses == pytest.approx(2 / 4)  # wrong sub-classes at 1, 3, 5, 6; under the true super-class at 1 and 5
    assert r.novel_fires == pytest.approx(1 / 2) and r.novel_super_accuracy == pytest.approx(1 / 2)
    assert r.novel_predicted == [0, 0, 1, 0, 1]
    assert r.known_super_accuracy == pytest.approx(5 / 6)
    assert r.novel.tolist() == [False, False, False, False, True, True, False, False]
    assert r.sub_as_trained["accuracy"] == pytest.approx(3 / 4)
    # the averaged metrics, by scikit-learn
    for level, t, p in (("super", true_super, PRED_SUPER), ("sub", TRUE_SUB, PRED_SUB)):
        m = getattr(r, level)
        for average in ("macro", "weighted"):
            assert m[f"F1 ({average})"] == pytest.approx(f1_score(t, p, average=average, zero_division=0))
            assert m[f"precision ({average})"] == pytest.approx(precision_score(t, p, average=average, zero_division=0))
        assert m["confusion"] == confusion_matrix(t, p, labels=np.arange(3 if level == "super" else 5)).tolist()


def test_evaluate_scores_flags_and_aurocs_match_a_naive_loop_and_scikit_learn():
    sp = splits()
    keep = 0.8
    r = experiment.evaluate(ScriptedNet(), sp, H, RECIPE, keep_known=keep)
    test_scores, val_scores = naive_scores(sp.test, sp.train), naive_scores(sp.val, sp.train)
    novel = np.array(TRUE_SUB) == 4
    assert set(r.scores) == set(test_scores) == set(r.auroc) == set(r.novel_flagged) == set(r.known_flagged)
    for name, expected in test_scores.items():
        np.testing.assert_allclose(r.scores[name].numpy(), expected, rtol=1e-5, atol=1e-6)
        assert r.auroc[name] == pytest.approx(roc_auc_score(novel, expected))
        threshold = float(np.quantile(val_scores[name], keep))  # numpy's linear interpolation
        flagged = [s > threshold for s in expected]
        assert r.novel_flagged[name] == pytest.approx(sum(f for f, n in zip(flagged, novel) if n) / novel.sum())
        assert r.known_flagged[name] == pytest.approx(sum(f for f, n in zip(flagged, novel) if not n) / (~novel).sum())


def test_a_flat_net_reads_its_super_class_off_its_sub_class_and_is_never_inconsistent():
    sp = splits()
    r = experiment.evaluate(ScriptedNet(flat=True), sp, H, RECIPE, keep_known=0.8)
    super_of_sub = [int(SUB_TO_SUPER[p]) for p in PRED_SUB]  # [0, 0, 1, 1, 1, 1, 2, 1]
    true_super = [0, 0, 1, 2, 1, 1, 0, 1]
    assert r.inconsistency == 0.0
    assert r.super["accuracy"] == pytest.approx(accuracy_score(true_super, super_of_sub)) == pytest.approx(6 / 8)
    assert r.novel_super_accuracy == 1.0  # both novel images were called dogs (sub-classes 4 and 2)
    assert r.path_accuracy == pytest.approx(4 / 8)


def test_flag_rate_by_hand_and_against_a_naive_count():
    val = torch.arange(101, dtype=torch.float64) / 100  # 0.00, 0.01, ..., 1.00: the 95% quantile is 0.95
    threshold, flagged = flag_rate(val, torch.tensor([0.5, 0.95, 0.951, 2.0], dtype=torch.float64), keep=0.95)
    assert threshold == pytest.approx(0.95) and flagged.tolist() == [False, False, True, True]  # strictly above
    g = torch.Generator().manual_seed(0)
    val, test = torch.randn(37, generator=g), torch.randn(50, generator=g) + 1
    threshold, flagged = flag_rate(val, test, keep=0.9)
    ordered = sorted(val.tolist())  # the 90% quantile with linear interpolation, by hand
    pos = 0.9 * (len(ordered) - 1)
    by_hand = ordered[int(pos)] + (pos - int(pos)) * (ordered[int(pos) + 1] - ordered[int(pos)])
    assert threshold == pytest.approx(by_hand, rel=1e-6)
    assert flagged.tolist() == [t > by_hand for t in test.tolist()]
    assert sum(v > threshold for v in val.tolist()) <= round(0.1 * len(val))  # it keeps at least 90% of the known images


def test_level_metrics_precision_per_class_f1_and_confusion_against_scikit_learn_and_a_loop():
    t = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = torch.tensor([0, 1, 3, 1, 1, 2, 0, 2, 3])  # output 3 is never a true class: it counts as a mistake only
    m = level_metrics(t, p, num_classes=4)
    for average in ("macro", "weighted"):
        assert m[f"precision ({average})"] == pytest.approx(precision_score(t, p, labels=[0, 1, 2], average=average, zero_division=0))
    # by hand: class 0 predicted at images 0, 6 (right once), class 1 at 1, 3, 4 (twice), class 2 at 5, 7 (both)
    precisions, support = [1 / 2, 2 / 3, 1.0], [3, 2, 4]
    assert m["precision (macro)"] == pytest.approx(sum(precisions) / 3)
    assert m["precision (weighted)"] == pytest.approx(sum(a * n for a, n in zip(precisions, support)) / 9)
    confusion = [[0] * 4 for _ in range(4)]
    for a, b in zip(t.tolist(), p.tolist()):
        confusion[a][b] += 1
    assert m["confusion"] == confusion
    per_class = []
    for c in range(4):
        tp = sum(a == c and b == c for a, b in zip(t.tolist(), p.tolist()))
        fp = sum(a != c and b == c for a, b in zip(t.tolist(), p.tolist()))
        fn = sum(a == c and b != c for a, b in zip(t.tolist(), p.tolist()))
        per_class.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    assert m["per-class F1"] == pytest.approx(per_class)


@pytest.mark.parametrize("backbone", ["resnet_mini", "convnext_mini"])
def test_a_flat_models_super_class_output_is_the_log_of_its_sub_class_probabilities_summed_per_super_class(backbone):
    torch.manual_seed(0)
    model = HierarchicalNet(HierarchicalConfig(backbone=backbone, num_sub=5, hidden=8, heads="flat", input_size=32))
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    out = experiment.outputs(model, images, H, batch_size=4)  # two batches
    with torch.no_grad():
        sup, sub = model.eval()(images.float() / 255)
    assert sup is None and out["flat"] is True
    torch.testing.assert_close(out["sub"], sub, rtol=1e-5, atol=1e-5)
    for i, row in enumerate(sub.double().tolist()):
        total = sum(math.exp(v) for v in row)
        for s in range(3):
            in_s = sum(math.exp(v) for v, up in zip(row, SUB_TO_SUPER.tolist()) if up == s)
            assert float(out["super"][i, s]) == pytest.approx(math.log(in_s / total), abs=1e-5)
    # the same by torch.logsumexp of the log-softmax over each super-class's sub-classes
    log_p = sub.log_softmax(1)
    by_group = torch.stack([torch.logsumexp(log_p[:, SUB_TO_SUPER == s], 1) for s in range(3)], 1)
    torch.testing.assert_close(out["super"], by_group, rtol=1e-5, atol=1e-5)
    # its predicted super-class is that of its predicted sub-class, not the arg-max of the summed probabilities
    assert torch.equal(experiment.predicted_super(out, H), SUB_TO_SUPER[sub.argmax(1)])


def test_micro_f1_is_scikit_learns_and_equals_accuracy_by_a_naive_count():
    """The paper's metric (its authors' code: f1_score(..., average='micro')): for one label per image it is the accuracy."""
    t = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    p = torch.tensor([0, 1, 3, 1, 1, 2, 0, 2, 3])
    m = level_metrics(t, p, num_classes=4)
    assert m["F1 (micro)"] == pytest.approx(f1_score(t.numpy(), p.numpy(), average="micro"))
    assert m["F1 (micro)"] == pytest.approx(sum(a == b for a, b in zip(t.tolist(), p.tolist())) / len(t)) == pytest.approx(5 / 9)
    assert m["F1 (micro)"] != pytest.approx(m["F1 (weighted)"])  # the two readings differ here


def test_evaluate_scores_the_training_images_too_as_the_authors_code_does():
    sp = splits()
    r = experiment.evaluate(ScriptedNet(), sp, H, RECIPE, keep_known=0.8)
    x = read_back(sp.train)  # the training "images" are their logits: super-class 0..2, sub-class 3..7
    pred_sub, pred_super = x[:, 3:8].argmax(1), x[:, :3].argmax(1)
    true_sub = sp.train.labels.numpy()
    true_super = SUB_TO_SUPER[sp.train.labels].numpy()
    assert r.sub_train["F1 (micro)"] == pytest.approx(f1_score(true_sub, pred_sub, average="micro"))
    assert r.super_train["F1 (micro)"] == pytest.approx(accuracy_score(true_super, pred_super))
    assert r.sub_train["F1 (weighted)"] == pytest.approx(f1_score(true_sub, pred_sub, average="weighted", labels=np.unique(true_sub), zero_division=0))
    assert r.sub["F1 (micro)"] == pytest.approx(4 / 8)  # held out: the hand-counted accuracy above
