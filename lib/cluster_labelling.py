"""Paper 4: a VAE whose latent clusters are labelled through their decoded centres.

After every epoch the training latents are clustered with k-means (k by the
elbow method), the cluster centres are decoded to images and shown to an
annotator, who gives each a label and a confidence. A centre that is "not a
valid digit" (confidence below a threshold) has its cluster split again (the
second level). Every member inherits its centre's label with the confidence
of Eq. (2), and the next epoch trains with Eq. (3).

The annotator of the paper is a person. Here it is simulated by
:class:`Annotator`: a digit classifier trained on images the VAE never sees,
shown only the decoded centre image. Reconstructions are judged by a second,
independent classifier trained on other images (the judge), so the network
that gave the labels never grades the reconstructions they shaped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.cluster import KMeans

from .data import Split, batches, to_unit
from .evaluation import accuracy
from .losses import vae_loss, weighted_cross_entropy
from .models.vae import LabellingVAE, VAEConfig
from .training import Checkpoint, fit_epochs, seed_everything


@dataclass(frozen=True)
class LabellingConfig:
    z_dim: int = 10  # latent dimension (§4: 10)
    hidden: tuple[int, ...] = (512, 128, 32)  # encoder widths (§4: third layer 32)
    beta: float = 5.0  # KL weight of Eq. (1) (§3.3: 5)
    gamma: float = 150.0  # classification weight of Eq. (3) (Fig. 4: 150); 0 = plain VAE
    epochs: int = 5  # total epochs (§4: 5)
    unsupervised_epochs: int = 1  # epochs before the first labelling (§4: 1)
    lr: float = 1e-3  # Adam learning rate (not given in the paper)
    batch_size: int = 128  # images per step (not given in the paper)
    k_min: int = 4  # smallest k the elbow method considers
    k_max: int = 20  # largest k the elbow method considers
    fixed_k: int = 0  # > 0: use this k instead of the elbow (labels-spent sweep)
    k_second_max: int = 6  # largest k when an invalid cluster is split again
    valid_confidence: float = 0.5  # a centre below this confidence is "not a valid digit"
    a: float = 1.0  # distance decay of Eq. (2), per unit of latent distance
    elbow_sample: int = 5000  # latents used to choose k (the final k-means uses all)
    label_source: str = "clusters"  # "clusters" (the paper) or "random" (baseline: random images, see train_labelling_vae)
    random_labels: tuple[int, ...] = ()  # with label_source="random": new random images labelled in each training round (an int: one round)
    oracle: bool = False  # control: a centre is labelled with its cluster's majority true digit, confidence 1 (no annotator)

    def __post_init__(self):
        if isinstance(self.random_labels, int):  # one round, after the first labelling epoch
            object.__setattr__(self, "random_labels", (self.random_labels,))
        object.__setattr__(self, "random_labels", tuple(int(n) for n in self.random_labels))
        if any(n < 0 for n in self.random_labels):
            raise ValueError(f"random_labels {list(self.random_labels)} must be non-negative counts, one a round")
        if self.oracle and self.label_source != "clusters":
            raise ValueError("the oracle labels cluster centres: it needs label_source='clusters'")
        if self.label_source not in ("clusters", "random"):
            raise ValueError(f"label_source must be 'clusters' or 'random', not {self.label_source!r}")
        if not 0 <= self.unsupervised_epochs < self.epochs:
            raise ValueError(f"unsupervised_epochs={self.unsupervised_epochs} must be in [0, epochs={self.epochs})")
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if not 0.0 <= self.valid_confidence <= 1.0:
            raise ValueError(f"valid_confidence={self.valid_confidence} must be in [0, 1]")


class Annotator:
    """The simulated person: shown an image, says a digit and how sure it is.

    ``model`` is any classifier of [0, 1] images; the confidence is its softmax maximum.
    Every image shown through :meth:`label` counts as one label spent.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.labels_given = 0

    @torch.no_grad()
    def recognise(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels, confidences) for float images in [0, 1]; spends no labels (used for evaluation)."""
        device = next(self.model.parameters()).device
        probs = torch.cat([self.model(x.to(device)).softmax(1).cpu() for x in images.split(1024)])
        confidence, label = probs.max(1)
        return label, confidence

    def label(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.labels_given += len(images)
        return self.recognise(images)


def elbow(ks: list[int], inertias: list[float]) -> int:
    """The elbow of a decreasing inertia curve: the k farthest below the chord joining its ends
    (the "kneedle" rule of Satopaa et al. 2011, on curves normalised to the unit square)."""
    k = np.asarray(ks, dtype=float)
    y = np.asarray(inertias, dtype=float)
    if len(k) < 3:
        return int(k[0])
    x = (k - k[0]) / (k[-1] - k[0])
    y = (y - y.min()) / max(y.max() - y.min(), 1e-12)
    chord = y[0] + (y[-1] - y[0]) * x
    return int(k[np.argmax(chord - y)])


def choose_k(points: np.ndarray, k_min: int, k_max: int, seed: int, sample: int) -> tuple[int, dict[int, float]]:
    """k by the elbow method over ``k_min..k_max``, on at most ``sample`` points."""
    rng = np.random.default_rng(seed)
    sub = points[rng.permutation(len(points))[:sample]]
    k_max = min(k_max, len(sub) - 1)
    inertias = {k: float(KMeans(k, n_init=1, random_state=seed).fit(sub).inertia_) for k in range(k_min, k_max + 1)}
    return elbow(list(inertias), list(inertias.values())), inertias


@dataclass
class Labelling:
    """One round of annotation: what every training image was told, and what the annotator saw."""

    targets: torch.Tensor  # (N,) int64, -1 for an image left unlabelled
    weights: torch.Tensor  # (N,) float, w_n of Eq. (2); 0 where unlabelled
    k: int  # first-level clusters
    inertias: dict  # k -> k-means inertia (the elbow curve)
    centres: torch.Tensor  # (M, D) every annotated centre (first level, then second)
    centre_images: torch.Tensor  # (M, C, H, W) what the annotator was shown
    centre_labels: torch.Tensor  # (M,)
    centre_confidence: torch.Tensor  # (M,) p_c
    centre_level: torch.Tensor  # (M,) 1 or 2
    centre_majority: torch.Tensor | None = None  # (M,) the majority true digit of each centre's members (-1: none); None without truth

    @property
    def labels_given(self) -> int:
        return len(self.centre_labels)

    def valid(self, threshold: float) -> torch.Tensor:
        return self.centre_confidence >= threshold

    def agreement(self) -> float | None:
        """The share of annotated centres (with members) whose label is their cluster's majority true digit (None if unknown)."""
        if self.centre_majority is None or not (known := self.centre_majority >= 0).any():
            return None
        return float((self.centre_labels[known] == self.centre_majority[known]).float().mean())


def majority(truth: np.ndarray, idx: np.ndarray) -> int:
    """The most frequent digit among ``truth[idx]`` (the smallest on a tie); -1 for an empty cluster."""
    return int(np.bincount(truth[idx]).argmax()) if len(idx) else -1


def confidence_weights(distances: torch.Tensor, p_c: torch.Tensor, a: float) -> torch.Tensor:
    """Paper 4, Eq. (2): w_n = p_c * exp(-a * d_n), d_n the distance of image n to its cluster centre."""
    return p_c * torch.exp(-a * distances)


def label_clusters(
    points: torch.Tensor,
    decode: Callable[[torch.Tensor], torch.Tensor],
    annotator: Annotator,
    config: LabellingConfig,
    seed: int,
    truth: torch.Tensor | None = None,
) -> Labelling:
    """Cluster ``points`` (N, D), show the decoded centres to ``annotator``, propagate (Eq. 2).

    ``decode`` maps centres (M, D) to images (M, C, H, W) in [0, 1]: the VAE's decoder, or a
    reshape when the points are raw pixels. ``truth`` (N,), the points' true digits, is never used
    to label, except by the oracle (``config.oracle``: each centre takes its members' majority digit
    with confidence 1, one label spent a centre); with it, every centre's majority is recorded.
    """
    z = points.float().cpu().numpy()
    truth_np = truth.cpu().numpy() if truth is not None else None
    if config.oracle and truth_np is None:
        raise ValueError("the oracle annotator needs the points' true digits (truth=)")

    def annotate(images: torch.Tensor, groups: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        if not config.oracle:
            return annotator.label(images)
        annotator.labels_given += len(images)  # the oracle's answers are labels spent too
        return torch.tensor([majority(truth_np, g) for g in groups], dtype=torch.int64), torch.ones(len(groups))

    if config.fixed_k:
        k, inertias = config.fixed_k, {}
    else:
        k, inertias = choose_k(z, config.k_min, config.k_max, seed, config.elbow_sample)
    first = KMeans(k, n_init=3, random_state=seed).fit(z)
    centres = [first.cluster_centers_]
    members = [np.flatnonzero(first.labels_ == c) for c in range(k)]
    levels = [np.ones(k, dtype=int)]
    c_img = decode(torch.from_numpy(first.cluster_centers_).float())
    c_lab, c_conf = annotate(c_img, members)
    images, labels, confs = [c_img], [c_lab], [c_conf]
    # second level: split again every cluster whose centre is not a valid digit
    for c in np.flatnonzero(c_conf.numpy() < config.valid_confidence):
        idx = members[c]
        if len(idx) < 4 * 2:
            continue
        k2, _ = choose_k(z[idx], 2, config.k_second_max, seed, config.elbow_sample)
        sub = KMeans(k2, n_init=3, random_state=seed).fit(z[idx])
        s_img = decode(torch.from_numpy(sub.cluster_centers_).float())
        s_lab, s_conf = annotate(s_img, [idx[sub.labels_ == j] for j in range(k2)])
        centres.append(sub.cluster_centers_)
        levels.append(np.full(k2, 2))
        images.append(s_img), labels.append(s_lab), confs.append(s_conf)
        members.extend(idx[sub.labels_ == j] for j in range(k2))
    centres_t = torch.from_numpy(np.concatenate(centres)).float()
    conf_t, lab_t = torch.cat(confs), torch.cat(labels)
    # propagate: each image takes the label of the deepest valid centre it belongs to
    n = len(z)
    targets = torch.full((n,), -1, dtype=torch.int64)
    weights = torch.zeros(n)
    z_t = torch.from_numpy(z)
    for m, idx in enumerate(members):
        if conf_t[m] < config.valid_confidence or len(idx) == 0:
            continue
        idx_t = torch.from_numpy(idx)
        d = (z_t[idx_t] - centres_t[m]).norm(dim=1)
        targets[idx_t] = lab_t[m]
        weights[idx_t] = confidence_weights(d, conf_t[m], config.a)
    majorities = torch.tensor([majority(truth_np, idx) for idx in members], dtype=torch.int64) if truth_np is not None else None
    return Labelling(targets, weights, k, inertias, centres_t, torch.cat(images), lab_t, conf_t, torch.from_numpy(np.concatenate(levels)),
                     majorities)


def random_labelling(n_images: int, images: torch.Tensor, annotator: Annotator, n_labels: int, seed: int, *,
                     previous: Labelling | None = None) -> Labelling:
    """Baseline: the annotator labels ``n_labels`` randomly chosen training images (the same ones for
    the same ``seed``); the weight of each is the annotator's confidence, Eq. (2) with d = 0.

    With ``previous`` (an earlier round of the same seed), the images are the next ``n_labels`` of
    the same seeded order, added to those already labelled: round after round, the labelled images
    are the first ones of one permutation, so their union is what one draw of the total would label."""
    before = 0 if previous is None else int((previous.targets >= 0).sum())
    pick = torch.from_numpy(np.random.default_rng(seed).permutation(n_images)[before:before + n_labels])
    shown = to_unit(images[pick].cpu())
    lab, conf = annotator.label(shown)
    targets = torch.full((n_images,), -1, dtype=torch.int64) if previous is None else previous.targets.clone()
    weights = torch.zeros(n_images) if previous is None else previous.weights.clone()
    targets[pick], weights[pick] = lab, conf
    return Labelling(targets, weights, 0, {}, torch.zeros(0), shown, lab, conf, torch.ones(len(pick), dtype=torch.int64))


@torch.no_grad()
def encode_all(model: LabellingVAE, images: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    model.eval()
    return torch.cat([model.encode(x)[0] for (x,) in batches(images, batch_size=batch_size, shuffle=False)]).cpu()


@torch.no_grad()
def decode_cpu(model: LabellingVAE, z: torch.Tensor) -> torch.Tensor:
    device = next(model.parameters()).device
    return model.decode(z.to(device)).cpu()


@torch.no_grad()
def reconstruction_accuracy(model: LabellingVAE, judge: Annotator, val: Split) -> float:
    """The paper's "reconstruction accuracy": the share of reconstructed validation images that a
    digit classifier (here the independent ``judge``) recognises as their true digit."""
    device = next(model.parameters()).device
    recon = model.decode(encode_all(model, val.images.to(device)).to(device)).cpu()
    label, _ = judge.recognise(recon)
    return float((label == val.labels).float().mean())


@torch.no_grad()
def test_accuracy(model: LabellingVAE, test: Split) -> float:
    """Accuracy of the softmax head on the latent means of the test images."""
    device = next(model.parameters()).device
    mu = encode_all(model, test.images.to(device)).to(device)
    return accuracy(model.forward_head(mu).cpu(), test.labels)


def train_labelling_vae(
    config: LabellingConfig,
    train: Split,
    val: Split,
    test: Split,
    annotator: Annotator,
    judge: Annotator,
    *,
    seed: int,
    device: torch.device,
    checkpoint: Checkpoint | None,
    keep_centres: tuple[int, ...] = (),
) -> dict:
    """Train for ``config.epochs`` epochs; label after every epoch from ``unsupervised_epochs`` on.

    With ``label_source="clusters"`` (the paper) every image takes its cluster's label and Eq. (3)
    averages the weighted cross-entropy over each batch. With ``"random"`` (the baseline) the
    annotator labels ``random_labels[r]`` new random images after the r-th labelling epoch (as many
    an epoch as the method it controls spent), and keeps every image labelled so far; so that those
    few images get as much supervision as the method's, every step adds a batch of ``batch_size`` of
    them (drawn with replacement) whose mean weighted cross-entropy is Eq. (3)'s classification term.
    With ``config.oracle`` the centres are labelled with their members' majority true digit.

    ``train.labels`` are never used for training: only to report how many propagated labels
    are right (``label_purity``) and how often a centre's label is its members' majority digit
    (``annotator_agreement``); and, with ``config.oracle`` (a control arm), as that majority label.
    Returns the per-epoch history, the labels spent per round, and the annotated centres of the epochs in ``keep_centres`` (for the paper's Figs. 2-3).
    Resumes from ``checkpoint`` when a run with the same settings was interrupted; ``resumed_at_epoch``
    says where (0 for a run trained from scratch here).
    """
    generator = seed_everything(seed)
    model = LabellingVAE(VAEConfig(z_dim=config.z_dim, hidden=tuple(config.hidden))).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)  # one kernel per step: 2x faster on small MLPs
    images = train.images.to(device)
    stateful = {"model": model, "optimiser": optimiser, "generator": generator}
    labelled = config.gamma > 0
    n = len(images)
    current: dict = {}  # the labelling the next epoch trains with

    def train_epoch(loop: dict) -> None:
        """One epoch of Eq. (3) (Eq. (1) alone before the first labelling)."""
        model.train()
        labelling = current.get("labelling")
        targets = (labelling.targets if labelling is not None else torch.full((n,), -1)).to(device)
        weights = (labelling.weights if labelling is not None else torch.zeros(n)).to(device)
        sums = torch.zeros(3, dtype=torch.float64, device=device)
        labelled_rows = torch.nonzero(targets >= 0).flatten() if config.label_source == "random" else None
        for x, t, w in batches(images, targets, weights, batch_size=config.batch_size, shuffle=True, generator=generator):
            out = model(x)
            parts = vae_loss(out.recon_logits, x, out.mu, out.logvar, config.beta)  # Eq. (1)
            if labelled_rows is not None and len(labelled_rows):  # the baseline: a batch of its labelled images
                pick = labelled_rows[torch.randint(len(labelled_rows), (config.batch_size,), generator=generator).to(device)]
                ce = weighted_cross_entropy(model(to_unit(images[pick])).class_logits, targets[pick], weights[pick])
            else:
                ce = weighted_cross_entropy(out.class_logits, t, w)
            loss = parts.total + config.gamma * ce if labelling is not None else parts.total  # Eq. (3)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            sums += torch.stack([parts.reconstruction.detach(), parts.kl.detach(), ce.detach()]).double() * len(x)
        sums = (sums / n).tolist()  # one wait for the device per epoch, not three per step
        current["record"] = {"epoch": loop["epoch"] + 1, "reconstruction_loss": sums[0], "kl": sums[1], "weighted_ce": sums[2]}

    def end_epoch(loop: dict) -> None:
        """The epoch's test and reconstruction accuracy, then a labelling round (the paper's: after every epoch)."""
        epoch, record, labelling = loop["epoch"], current["record"], current.get("labelling")
        record["test_accuracy"] = test_accuracy(model, test)
        record["reconstruction_accuracy"] = reconstruction_accuracy(model, judge, val)
        round_ = epoch - config.unsupervised_epochs  # 0 after the first labelling epoch
        random_round = round_ < len(config.random_labels) and epoch < config.epochs
        if labelled and round_ >= 0 and (config.label_source == "clusters" or random_round):
            before = annotator.labels_given
            if config.label_source == "clusters":
                labelling = label_clusters(encode_all(model, images), lambda c: decode_cpu(model, c), annotator, config, seed + epoch,
                                           truth=train.labels)
            else:
                labelling = random_labelling(n, images, annotator, config.random_labels[round_], seed, previous=labelling)
            has = labelling.targets >= 0
            valid = labelling.valid(config.valid_confidence)
            record.update(
                labels_given=annotator.labels_given - before,
                k=labelling.k,
                second_level=int((labelling.centre_level == 2).sum()),
                labelled_fraction=float(has.float().mean()),
                label_purity=float((labelling.targets[has] == train.labels[has]).float().mean()) if has.any() else None,
                used_for_training=epoch < config.epochs,
                annotator_agreement=labelling.agreement(),  # centres labelled as their cluster's majority (None for random images)
                digits_labelled=len(set(labelling.centre_labels[valid].tolist())),  # distinct digits among the valid labels of this round
            )
            if epoch in keep_centres:
                loop["centres"][epoch] = {k: v for k, v in asdict(labelling).items() if k not in ("targets", "weights")}
        current["labelling"] = labelling
        loop["history"].append(record)
        loop["labelling"] = asdict(labelling) if labelling is not None else None
        loop["labels_given"] = annotator.labels_given

    def start(loop: dict) -> None:
        """The annotator's count and the labelling, as they stood (zero and none for a fresh start)."""
        annotator.labels_given = loop["labels_given"]
        current["labelling"] = Labelling(**loop["labelling"]) if loop["labelling"] else None
        current["resumed_at"] = loop["epoch"] + 1 if loop["epoch"] else 0

    fresh = {"history": [], "labelling": None, "centres": {}, "labels_given": 0}
    loop, _ = fit_epochs(config.epochs, stateful, fresh, train_epoch, end_epoch=end_epoch, start=start, checkpoint=checkpoint,
                         device=device, desc=f"seed {seed}")
    history, centres = loop["history"], loop["centres"]
    spent = sum(r.get("labels_given", 0) for r in history if r.get("used_for_training"))
    return {"history": history, "labels_spent": spent, "centres": centres, "model": model,
            "resumed_at_epoch": current["resumed_at"]}
