"""Two-level (super-class / sub-class) classification: class weights, per-level metrics, how the levels agree.

Vocabulary: ``sub_to_super[j]`` is the super-class of sub-class ``j``; the sub-class outputs are
the training sub-classes ``0..K-1`` and the novel sub-class's slot ``K`` (paper 3's extra output).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_score, roc_auc_score
from sklearn.utils.class_weight import compute_class_weight


def class_weights(labels: torch.Tensor, num_outputs: int, novel: int | None = None) -> torch.Tensor:
    """scikit-learn's ``compute_class_weight('balanced')`` over the labels present, n / (k * n_c).

    ``novel``, an output with no training example, gets the average of the others' weights
    (paper 3: "an average weight derived from the existing sub-classes").
    """
    present = np.unique(labels.numpy())
    missing = sorted(set(range(num_outputs)) - set(present.tolist()) - ({novel} if novel is not None else set()))
    if missing:
        raise ValueError(f"outputs {missing} have no training example and are not the novel slot; every class needs images")
    weights = np.zeros(num_outputs)
    weights[present] = compute_class_weight("balanced", classes=present, y=labels.numpy())
    if novel is not None:
        weights[novel] = weights[present].mean()
    return torch.tensor(weights, dtype=torch.float32)


def level_metrics(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> dict:
    """Accuracy, precision and F1 (macro and weighted over the classes in ``y_true``), per-class F1, confusion.

    ``"F1 (micro)"`` is paper 3's own metric, as its authors' code computes it
    (``f1_score(y_true, y_pred, average='micro')``, every label): for one label per image, every wrong
    prediction is one false positive and one false negative, so micro precision, recall and F1 all
    equal the accuracy.
    """
    t, p = y_true.numpy(), y_pred.numpy()
    present = np.unique(t)  # a class absent from the test set does not count in the averages
    out = {"accuracy": float(accuracy_score(t, p)), "F1 (micro)": float(f1_score(t, p, average="micro"))}
    for average in ("macro", "weighted"):
        out[f"precision ({average})"] = float(precision_score(t, p, labels=present, average=average, zero_division=0))
        out[f"F1 ({average})"] = float(f1_score(t, p, labels=present, average=average, zero_division=0))
    out["per-class F1"] = f1_score(t, p, labels=np.arange(num_classes), average=None, zero_division=0).tolist()
    out["confusion"] = confusion_matrix(t, p, labels=np.arange(num_classes)).tolist()
    return out


def inconsistency(pred_super: torch.Tensor, pred_sub: torch.Tensor, sub_to_super: torch.Tensor) -> float:
    """Share of images whose predicted sub-class lies under another super-class than the one predicted."""
    return float((sub_to_super[pred_sub] != pred_super).float().mean())


def path_accuracy(true_super: torch.Tensor, true_sub: torch.Tensor, pred_super: torch.Tensor, pred_sub: torch.Tensor) -> float:
    """Share of images whose whole path is right: the super-class and the sub-class both correct
    (for two heads this also means the two agree)."""
    return float(((pred_super == true_super) & (pred_sub == true_sub)).float().mean())


def near_miss_share(true_sub: torch.Tensor, pred_sub: torch.Tensor, sub_to_super: torch.Tensor) -> float:
    """How severe the sub-class mistakes are: of the images whose sub-class is wrong, the share whose
    predicted sub-class still lies under the true super-class (a wrong breed, not a bird for a dog).
    NaN when there is no mistake."""
    wrong = pred_sub != true_sub
    if not wrong.any():
        return float("nan")
    return float((sub_to_super[pred_sub[wrong]] == sub_to_super[true_sub[wrong]]).float().mean())


def novelty_auroc(scores: dict[str, torch.Tensor], novel: torch.Tensor) -> dict[str, float]:
    """AUROC of flagging the ``novel`` images by a *high* novelty score."""
    return {name: float(roc_auc_score(novel.numpy(), s.numpy())) for name, s in scores.items()}


def flag_rate(score_known_val: torch.Tensor, score_test: torch.Tensor, keep: float = 0.95) -> tuple[float, torch.Tensor]:
    """The threshold that keeps ``keep`` of the known validation images, and which test images it flags."""
    threshold = float(torch.quantile(score_known_val, keep))
    return threshold, score_test > threshold
