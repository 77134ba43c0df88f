"""Training an embedding head with triplets (paper 1, step 2) and using its embeddings.

The trunk under the head is frozen (:class:`lib.models.EmbeddingNet`), so its output for every
image is computed once (:func:`lib.training.predict` on the trunk) and the head trains on those rows: the same
gradients as running the trunk in every step, at a fraction of the cost.

A batch is built as the paper describes (after Kelcey 2020): every class is the anchor of
``batch_class_repeats`` triplets, each with a random positive of its class and a random
negative of another class. The paper's stopping rule is garbled in its text ("using a Nadam
[optimiser] until reaching a learning rate lower than 5000"); the book reads it as NAdam at
lr 1e-3, the learning rate cut by ``factor`` whenever the epoch's loss stops improving for
``patience`` epochs (Keras' ``ReduceLROnPlateau``), and training stops once it falls below
``min_lr`` = 5e-5, or after ``max_epochs``. "Improving" is Keras' test: the loss falls below the best
so far by more than ``min_delta`` (an absolute amount, Keras' default 1e-4), not by a share of it.

:func:`fit_softmax_head` trains a softmax head on the same cached features by the same rule: the
conventional way to add a class to a network whose trunk stays frozen (the chapter's control).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .losses import cosine_triplet_loss
from .training import Checkpoint, fit_epochs, seed_everything


def class_members(labels: torch.Tensor) -> list[torch.Tensor]:
    """Row indices of every class ``0..K-1``; checks each has the two images a triplet needs."""
    labels = labels.cpu()
    members = [torch.nonzero(labels == c).flatten() for c in range(int(labels.max()) + 1)]
    if len(members) < 2 or min(len(m) for m in members) < 2:
        raise ValueError(f"triplets need at least 2 classes and 2 images per class (images per class: {[len(m) for m in members]})")
    return members


def sample_triplets(members: list[torch.Tensor], repeats: int, generator: torch.Generator, batches: int = 1
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batches`` batches of (anchor, positive, negative) row indices, each with ``repeats`` anchors per class.

    ``members`` comes from :func:`class_members`. Positives differ from their anchor; a
    negative's class is drawn uniformly from the other K - 1 classes, then its image uniformly.
    Returns three (batches, K * repeats) int64 tensors (one epoch drawn at once, moved to the
    device at once); with ``batches=1``, three (K * repeats,) tensors.
    """
    k = len(members)
    sizes = torch.tensor([len(m) for m in members])
    starts = torch.cumsum(sizes, 0) - sizes
    pool = torch.cat(members)
    shape = (batches, repeats)
    anchors, positives, negatives = [], [], []
    for c, m in enumerate(members):
        a = torch.randint(len(m), shape, generator=generator)
        p = (a + torch.randint(1, len(m), shape, generator=generator)) % len(m)  # any image but the anchor
        neg_class = (c + torch.randint(1, k, shape, generator=generator)) % k
        offset = (torch.rand(shape, generator=generator) * sizes[neg_class]).long().clamp(max=sizes[neg_class] - 1)
        anchors.append(m[a]), positives.append(m[p]), negatives.append(pool[starts[neg_class] + offset])
    out = torch.cat(anchors, 1), torch.cat(positives, 1), torch.cat(negatives, 1)  # (batches, K * repeats)
    return tuple(t[0] for t in out) if batches == 1 else out


@dataclass(frozen=True)
class HeadSchedule:
    """Paper 1, step 2: batch construction, Eqs. (2)-(3) and the optimiser's schedule."""

    batch_class_repeats: int = 15  # anchors per class per batch (paper: 15)
    scale: float = 0.2  # k of Eq. (2) (paper: 0.2)
    margin: float = 0.1  # m of Eq. (3), on the scaled similarities (not given in the paper)
    lr: float = 1e-3  # NAdam's starting learning rate (paper: 1e-3)
    factor: float = 0.1  # learning-rate cut on a plateau (Keras' default)
    min_delta: float = 1e-4  # an epoch improves only if its loss falls below the best by more than this, absolute (Keras' default)
    patience: int = 2  # epochs without improvement that bring a cut, counted as Keras counts them (the paper's framework)
    min_lr: float = 5e-5  # stop once the learning rate is below this
    max_epochs: int = 30  # stop here in any case

    def __post_init__(self):
        if self.batch_class_repeats < 1 or self.patience < 1 or self.max_epochs < 1:
            raise ValueError("batch_class_repeats, patience and max_epochs must be at least 1")
        if not (0 < self.factor < 1) or self.lr <= 0 or self.min_lr <= 0 or self.scale <= 0 or self.margin < 0:
            raise ValueError("factor must lie in (0, 1); lr, min_lr and scale must be positive; margin non-negative")
        if not (self.min_delta >= 0 and math.isfinite(self.min_delta)):
            raise ValueError(f"min_delta={self.min_delta} must be a non-negative amount of loss (Keras' default: 1e-4)")

    def plateau(self, opt: torch.optim.Optimizer) -> torch.optim.lr_scheduler.ReduceLROnPlateau:
        """Keras' ``ReduceLROnPlateau(factor, patience, min_delta)`` on ``opt``: an epoch improves when its
        loss is below the best so far by more than ``min_delta`` (absolute: ``threshold_mode="abs"``);
        Keras cuts once ``patience`` epochs in a row bring no improvement, PyTorch only after more than
        ``patience``: one less here keeps the Keras count."""
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=self.factor, patience=self.patience - 1,
                                                          threshold=self.min_delta, threshold_mode="abs")

    def stopped(self, opt: torch.optim.Optimizer) -> str:
        return f"learning rate below {self.min_lr:g}" if opt.param_groups[0]["lr"] < self.min_lr else f"max_epochs = {self.max_epochs}"


class HeadReport(NamedTuple):
    losses: list[float]  # mean triplet loss of every epoch
    lrs: list[float]  # learning rate during every epoch
    stopped: str  # why training stopped
    seconds: float  # training wall time, summed over resumed sessions
    resumed: bool
    clock_s: float = 0.0  # training time by lib.training.clock, summed over resumed sessions

    def ended_by_rule(self) -> bool:
        """Whether the learning-rate rule ended the training (it converged by the paper's rule), not the cap on epochs."""
        return not self.stopped.startswith("max_epochs")


def fit_embedding_head(
    head: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, schedule: HeadSchedule, *, seed: int,
    encode: Callable[[torch.Tensor], torch.Tensor] | None = None, checkpoint: Checkpoint | None = None, desc: str = "embedding head",
) -> HeadReport:
    """Train ``head`` (features -> embedding) with the cosine triplet loss on rows of ``inputs``.

    ``inputs`` are the frozen trunk's features, computed once (the cache); or, with ``encode``
    (images -> features, the frozen trunk), the images themselves, every triplet's images passing
    through the trunk in every step, as a Keras model with frozen layers trains. Both draw the same
    triplets and compute the same function, so they end with the same head up to rounding; only
    their cost differs. An epoch is ``ceil(N / (K * batch_class_repeats))`` batches, so about every
    image is an anchor once. Calling it again on a trained head continues its training ("train
    further").
    """
    generator = seed_everything(seed)
    device = next(head.parameters()).device if encode is not None else inputs.device
    head.to(device).train()
    opt = torch.optim.NAdam(head.parameters(), lr=schedule.lr)
    plateau = schedule.plateau(opt)
    steps = math.ceil(len(labels) / ((int(labels.max()) + 1) * schedule.batch_class_repeats))
    stateful = {"head": head, "optimiser": opt, "plateau": plateau, "generator": generator}
    members = class_members(labels)

    def train_epoch(loop: dict) -> None:
        total = torch.zeros((), device=device)
        loop["lrs"].append(opt.param_groups[0]["lr"])
        triplets = sample_triplets(members, schedule.batch_class_repeats, generator, batches=steps)
        if steps == 1:  # one batch comes back without its batch dimension
            triplets = tuple(t[None] for t in triplets)
        epoch_rows = torch.cat(triplets, 1).to(inputs.device)  # (steps, 3 * K * repeats)
        for step in range(steps):
            rows = epoch_rows[step]  # anchors, positives, negatives
            t = len(rows) // 3
            x = inputs[rows]
            if encode is not None:
                with torch.no_grad():
                    x = encode(x)  # (3T, feature_dim): the trunk, every step
            emb = head(x)  # (3T, embedding_dim)
            idx = torch.arange(t, device=device)
            loss = cosine_triplet_loss(emb, idx, idx + t, idx + 2 * t, schedule.margin, schedule.scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        loop["losses"].append(float(total) / steps)
        plateau.step(loop["losses"][-1])

    loop, resumed = fit_epochs(schedule.max_epochs, stateful, {"losses": [], "lrs": []}, train_epoch, device=device,
                               stop=lambda loop: opt.param_groups[0]["lr"] < schedule.min_lr, checkpoint=checkpoint, desc=desc)
    head.eval()
    return HeadReport(loop["losses"], loop["lrs"], schedule.stopped(opt), loop["seconds"], resumed, loop["clock"])


def fit_softmax_head(
    head: nn.Module, features: torch.Tensor, labels: torch.Tensor, schedule: HeadSchedule, *, seed: int,
    checkpoint: Checkpoint | None = None, desc: str = "softmax head",
) -> HeadReport:
    """Train ``head`` (features -> logits) with cross-entropy on cached features, by the embedding
    layer's rule: NAdam from ``schedule.lr``, Keras' plateau cuts on the epoch's mean loss, stopped
    below ``min_lr`` or at ``max_epochs``. A batch holds as many rows as a triplet batch has anchors
    (``K * batch_class_repeats``); an epoch shows every row once, in a seeded order. The margin and
    the similarity scale of the schedule are not used."""
    generator = seed_everything(seed)
    device = features.device
    head.to(device).train()
    opt = torch.optim.NAdam(head.parameters(), lr=schedule.lr)
    plateau = schedule.plateau(opt)
    batch = (int(labels.max()) + 1) * schedule.batch_class_repeats
    labels = labels.to(device)
    stateful = {"head": head, "optimiser": opt, "plateau": plateau, "generator": generator}

    def train_epoch(loop: dict) -> None:
        total = torch.zeros((), device=device)
        loop["lrs"].append(opt.param_groups[0]["lr"])
        order = torch.randperm(len(labels), generator=generator).to(device)
        for start in range(0, len(labels), batch):
            rows = order[start : start + batch]
            loss = F.cross_entropy(head(features[rows]), labels[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(rows)
        loop["losses"].append(float(total) / len(labels))
        plateau.step(loop["losses"][-1])

    loop, resumed = fit_epochs(schedule.max_epochs, stateful, {"losses": [], "lrs": []}, train_epoch, device=device,
                               stop=lambda loop: opt.param_groups[0]["lr"] < schedule.min_lr, checkpoint=checkpoint, desc=desc)
    head.eval()
    return HeadReport(loop["losses"], loop["lrs"], schedule.stopped(opt), loop["seconds"], resumed, loop["clock"])


@torch.no_grad()
def embed(head: nn.Module, features: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Unit-length embeddings (N, embedding_dim) on the CPU: cosine similarity is then a dot product."""
    head.eval()
    out = [F.normalize(head(features[i : i + batch_size]), dim=1) for i in range(0, len(features), batch_size)]
    return torch.cat(out).cpu()
