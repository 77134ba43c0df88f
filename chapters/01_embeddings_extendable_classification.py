# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Chapter 1 — Embeddings for classification that can grow a class
#
# **Paper.** F. Smilianets, *Application of embeddings for multi-class classification with optional
# extendability* (2024; `shared/papers/1-embeddings-extendable-classification.txt`) {cite:p}`smilianets2024embeddings`.

# %% tags=["hide-input", "outside-clone"]
# Outside a clone of the book's repository (Colab, a notebook downloaded from the book's page), fetch the
# book at the commit its page was built from, install it with its pinned packages, and go on in its
# chapters/ folder. Inside a clone, Binder's included, this cell does nothing.
import os, pathlib, subprocess, sys

BOOK_REPOSITORY = os.environ.get("BOOK_REPOSITORY", "")  # the book's build writes its repository here
BOOK_COMMIT = os.environ.get("BOOK_COMMIT", "main")  # ... and the commit the page was built from
if not (pathlib.Path.cwd().parent / "lib" / "units.py").is_file():
    if not BOOK_REPOSITORY:
        raise RuntimeError("This notebook is outside a clone of the book and does not name its repository: download it "
                           "from the book's page (that copy names it), or set BOOK_REPOSITORY to the repository's URL "
                           "(in the environment, or as the default on its line above).")
    home = pathlib.Path(os.environ.get("BOOK_HOME", pathlib.Path.home() / "beyond-softmax-book"))
    if not (home / ".git").is_dir():
        subprocess.run(["git", "clone", "--quiet", BOOK_REPOSITORY, str(home)], check=True)
    subprocess.run(["git", "-C", str(home), "checkout", "--quiet", BOOK_COMMIT], check=True)
    pip_options = os.environ.get("BOOK_PIP_OPTIONS", "").split()  # e.g. --no-index, for an offline mirror
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pip_options, "-e", str(home)], check=True)
    os.chdir(home / "chapters")
    sys.path.insert(0, str(home))

# %% tags=["remove-input"]
from lib import embedding_experiment
from lib.reporting import run_this_chapter

run_this_chapter("01_embeddings_extendable_classification", embedding_experiment)

# %% [markdown]
# **The claim.** A softmax classifier is rigid: a new class changes its last layer and means
# training again. The paper trains a CNN to map images to 64-d **embeddings** instead, and lets
# cheap classic classifiers (k-nearest neighbours, random forest) decide on them. A new class is
# then added by training the same network a little further and refitting the classic classifiers;
# the network's topology never changes, and the embeddings also serve **similarity search**.
#
# The procedure, on 3 classes of MNIST {cite:p}`lecun1998mnist` and of Fashion-MNIST {cite:p}`xiao2017fashion`, then a 4th:
#
# 1. a **straight classifier** (Fig. 3): a ResNet50V2 {cite:p}`he2016identity` whose inner and final stages feed a
#    Feature Pyramid Network {cite:p}`lin2017fpn`, dense layers on top, images resized 28 → 128, NAdam
#    {cite:p}`dozat2016nadam` at lr 1e-4,
#    cross-entropy, 4 epochs (MNIST) or 8 (Fashion-MNIST). Reported: **0.998 test accuracy on both**;
# 2. an **embedding generator** (Fig. 4): its convolutional part frozen, every pyramid level
#    ReLU → max-pool → flatten, concatenated into one dense layer of 64, trained with triplets:
#    every class is the anchor `batch_class_repeats = 15` times a batch, with a random positive and
#    negative, and the loss below. Classic classifiers on the embeddings give the paper's **Table 2**;
# 3. the **4th class** is added, the generator trained further on all four classes, everything
#    re-embedded and the classic classifiers retrained (Table 2's "4-class model").
#
# The loss, a triplet loss {cite:p}`schroff2015facenet`, compares an anchor's embedding $e_a$ with its
# positive's $e_p$ and its negative's $e_n$ by scaled cosine similarity, with $k = 0.2$ and a margin $m$:
#
# $$ P = k\cos(e_a, e_p),\qquad N = k\cos(e_a, e_n) \qquad (1),(2)$$
#
# $$ \text{loss} = \max(N - P + m,\ 0) \qquad (3)$$
#
# The paper says the extended system loses no accuracy "in scale which would render the system
# unusable". Its Eqs. (4)–(7) count the time to build each system and to add a class to it. The
# embedding route costs more up front by construction (Eq. 5 is Eq. 4 plus the classifiers on the
# embeddings), so that is no finding. Its argument about adding a class is **conditional**:
#
# > "Provided that for a practical task $t_{add.tr} \leq t_{tr}$ and $t_{tr.c} \ll t_{mod}$, the total
# > time to add a new class to an embedding-based classifier would be significantly smaller than for
# > a common classifier."
#
# and its conclusion, for MNIST, goes the other way:
#
# > "For simpler tasks, such as MNIST, the time costs for implementing and training the discussed
# > approach do not justify the stated advantages, as training conventional classification neural
# > networks is comparatively faster for such tasks. However, for more complex tasks involving larger
# > and more complex images, this approach may be desirable [...]"
#
# The paper measures no time; this chapter measures the machine's part of each equation.
#
# ```{note}
# **Two misprints, as the book reads them.** Eq. (3) is printed as max(P − N + m, 0). For
# *similarities* (higher is closer) that rewards an anchor for being far from its positive; the
# intended triplet loss is max(N − P + m, 0), implemented here. The stopping rule is garbled
# ("using a Nadam [optimiser] until reaching a learning rate lower than 5000"): we read it as NAdam
# from lr 1e-3, the rate cut tenfold whenever the epoch's loss stops improving (Keras'
# `ReduceLROnPlateau` with its absolute `min_delta`, 1e-4 by default), and training stopped once it falls below 5e-5. Table 2's values are not in
# the text of the paper the book works from (only its caption is), so its claim is judged by the
# paper's words.
# ```
#
# **What this chapter shows.** The three steps on both datasets over several seeds; Table 2 redrawn
# with six classic classifiers; Eqs. (4)–(7) measured, in the paper's setting and with the frozen
# trunk's features cached; a FAISS index saved, reloaded and extended with the new class; and what
# the paper leaves open: two controls for the extension (a new softmax head on the frozen trunk, and
# kNN on the trunk's raw features), how much of the extension needs the further training at all, what the old
# classes lose, and how the embedding space changes (a 2-D projection before and after).

# %% tags=["parameters"]
profile = "quick"  # "quick": these defaults (CPU, minutes); "cpu" and "full": chapters/profiles/01_embeddings_extendable_classification.<profile>.yaml
seeds = [0, 1, 2]  # one run of the whole procedure per seed and dataset; numbers are means with 95% intervals
device = "auto"  # "auto": CUDA when available, else the CPU
results_root = "../results"  # results/<profile>/<chapter>/ receives results.json, figures/, checkpoints/ and index/
smoke = False  # True: a plumbing test with tiny settings, which skips the sanity checks that such settings cannot pass
datasets = ["mnist", "fashion-mnist"]  # paper: both
classes = [0, 1, 2]  # MNIST's starting classes (paper: 3 classes, not named; we take the first three, see "The data")
added_class = 3  # MNIST's class added later (paper: "a 4th class"; we take the next one)
fashion_classes = [[1, 5, 8]]  # Fashion-MNIST's starting classes, one case each (ours, see "The data"); the first judges the 0.998 claim. cpu: also [0, 1, 2]
fashion_added = [9]  # the class added to each of them (cpu: [9, 3])
train_per_class = 100  # training images per class, a seeded random subset (paper: all, 6,000)
test_per_class = 100  # test images per class (paper: all, 1,000 or a few fewer)
backbone = "small"  # "small": pre-activation ResNet, 1 block per stage, widths 8-64; "resnet50": the paper's ResNet50V2
input_size = 28  # images are resized to this before the backbone (paper: 128)
fpn_channels = 16  # channels of each pyramid level (the FPN paper: 256)
hidden = 64  # width of the straight classifier's dense layer (not given in the paper)
mnist_epochs = 3  # straight classifier's epochs on MNIST (paper: 4)
fashion_epochs = 4  # ... on Fashion-MNIST (paper: 8)
straight_schedule = "constant"  # its learning rate: "constant" (paper) or "onecycle" (up to lr, then annealed to nearly 0)
lr = 0.001  # NAdam learning rate of the straight classifier (paper: 1e-4; 1e-3 here for 1/60 of its images)
batch_size = 16  # images per step of the straight classifier (not given; Keras' default: 32)
embedding_dim = 64  # size of an embedding (paper: 64)
batch_class_repeats = 15  # triplets per class per batch (paper: 15)
similarity_scale = 0.2  # k of Eq. (2) (paper: 0.2)
margin = 0.1  # m of Eq. (3), on the scaled similarities in [-k, k] (not given in the paper)
head_lr = 0.001  # NAdam's starting learning rate for the embedding layer (paper: 1e-3)
lr_factor = 0.1  # learning-rate cut on a plateau of the training loss (Keras' default)
lr_min_delta = 0.0001  # an epoch improves only if its loss is below the best by more than this, an absolute amount (Keras' default min_delta)
lr_patience = 2  # epochs without improvement before a cut
min_lr = 5e-05  # training stops below this learning rate (our reading of the paper's garbled rule)
max_head_epochs = 5  # ... or after this many epochs
knn_k = 5  # neighbours of the k-nearest-neighbours classifier (scikit-learn's default)
search_k = 10  # neighbours returned by the similarity search; precision@k uses the same k
tsne_points = 400  # test images per projection in the 2-D map (0: no map)
amp = False  # bfloat16 autocast where the device has it natively (a GPU; a CPU with AVX-512 BF16 or AMX); quick keeps fp32
channels_last = False  # NHWC memory layout, for tensor cores (the full profile sets it); refused on a multi-thread CPU, where
# oneDNN corrupts the heap in the weight gradient of its 1x1 stride-2 shortcut on odd batches (PyTorch 2.14.1)

# %% tags=["hide-input"]
# NBVAL_CHECK_OUTPUT
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from sklearn.manifold import TSNE
from tqdm import tqdm

from lib import embedding_experiment as experiment
from lib.embedding_experiment import (
    CENTROID,
    CONTROL_KNN,
    CONTROL_SOFTMAX,
    CONTROLS,
    EQ4,
    EQ5_CACHED,
    EQ5_KERAS,
    EQ6,
    EQ7_CACHED,
    EQ7_KERAS,
    KNN,
    KNN_RAW4,
    KNN_OLD_AFTER,
    KNN_OLD_BEFORE,
    MODEL3,
    MODEL4,
    ROUTES,
    SOFTMAX4,
    SOFTMAX_HEAD,
    STRAIGHT3,
    STRAIGHT4,
    STRAIGHT4_OLD,
    no_further,
    on_embeddings,
)
from lib.evaluation import compared, converged, mean_ci, percent_ci, points_ci, short_ci
from lib.models import StraightClassifier
from lib.plotting import confusion, image_grid, seed_points
from lib.readings import earlier
from lib.reporting import ChapterResults, show_stronger_profiles
from lib.training import CLOCKS, pick_device
from lib.verdicts import Above, AtLeast, Scale

settings = experiment.Settings.of(globals())  # the parameters above, each checked by lib's Settings
torch_device = pick_device(device)
results = ChapterResults("01_embeddings_extendable_classification", settings, experiment)
cases = settings.task.cases  # one class choice on one dataset each: MNIST's, then each of Fashion-MNIST's
names = [c.name for c in cases]
print(f"profile {profile} ({results.scale.label}), seeds {seeds}, device {torch_device}, cases {names}")

# %% [markdown]
# ## The data
#
# For each case: the starting classes and the added one, relabelled `0..3` in that order, a
# seeded random subset of `train_per_class` training and `test_per_class` test images per class
# (the subset is drawn again for every seed). Each model is tested on the classes it knows.
#
# **Which classes.** The paper names none. On MNIST we take the first three digits and add the
# fourth: 0, 1, 2 and then 3. On Fashion-MNIST the choice decides whether the paper's 0.998 is
# within reach at all, so the book runs two triples (the cpu profile both, the quick profile the
# first), both of them **ours**:
#
# - *Trouser, Sandal, Bag*, then *Ankle boot* (classes 1, 5, 8 and 9): three classes of unlike
#   silhouette, a triple on which a near-perfect score is plausible. The straight network's 0.998
#   is judged on it (`c1-straight-fashion-mnist`);
# - *T-shirt/top, Trouser, Pullover*, then *Dress* (0, 1, 2 and 3; the case `fashion-mnist-012`):
#   the hard case, one of the dataset's most confused pairs (T-shirt against Pullover, upper-body
#   garments of similar outline). Its straight accuracy is reported beside the claim, not judged
#   by it; the extension and time claims are judged on it too.

# %% tags=["hide-input"]
data = {name: experiment.DATASETS[name]() for name in datasets}
splits = {(c.name, s): experiment.make_splits(data[c.dataset], settings.task, seed=s, case=c) for c in cases for s in seeds}
class_names = {c.name: [data[c.dataset].classes[k] for k in [*c.classes, c.added_class]] for c in cases}  # label 0..K -> its name
title = {c.name: data[c.dataset].name + ("" if c.dataset == "mnist" else f" ({', '.join(class_names[c.name][:-1])} + {class_names[c.name][-1]})")
         for c in cases}  # Fashion-MNIST's cases named by their classes
for name, ds in data.items():  # which copy this machine read
    print(f"{ds.name}: {ds.provenance['format']}, lossy: {ds.provenance['lossy']}")
    for path, digest in sorted(ds.provenance["files"].items()):
        print(f"  {path.split('/')[-1]}: {digest[:23]}…")

# %% tags=["hide-input"]
# NBVAL_CHECK_OUTPUT
for case in cases:
    sp = splits[(case.name, seeds[0])]
    print(f"{title[case.name]}: starting classes {class_names[case.name][:-1]}, added class {class_names[case.name][-1]!r}")
    print(f"  per class (train / test): {torch.bincount(sp.train.labels).tolist()} / {torch.bincount(sp.test.labels).tolist()}")

# %% tags=["hide-input"]
for case in cases:
    sp, labels_, k = splits[(case.name, seeds[0])], class_names[case.name], len(case.classes)
    rows = [torch.nonzero(sp.train.labels == c).flatten()[:10] for c in range(k + 1)]
    fig = image_grid(sp.train.images[torch.cat(rows)], [labels_[c] + (" (added)" if c == k else "") for c in range(k + 1) for _ in range(10)],
                     ncols=10, title=f"{title[case.name]}: the starting classes and, last row, the added one", scale=0.8)
    plt.show()

# %% [markdown]
# ## The networks
#
# {py:class}`lib.models.StraightClassifier` is Fig. 3: the images resized to `input_size`, a
# pre-activation ResNet ({py:mod}`lib.models.preact_resnet`) whose four stages feed torchvision's
# `FeaturePyramidNetwork` (plus a max-pooled fifth level), and per level ReLU → 2×2 max pooling →
# flatten, concatenated ({py:class}`lib.models.PyramidTrunk`), then Dense(`hidden`) → ReLU →
# Dense(classes). {py:class}`lib.models.EmbeddingNet` is Fig. 4: the same trunk, frozen, and one
# Dense(64). Because the trunk is frozen, its output for every image can be computed once
# ({py:func}`lib.training.predict` on the trunk) and only the dense layer trained on it
# ({py:func}`lib.metric_learning.fit_embedding_head`), on triplet batches drawn by
# {py:func}`lib.metric_learning.sample_triplets` and the loss
# {py:func}`lib.losses.cosine_triplet_loss`. A Keras model with frozen layers does not do that: it
# runs them on every image of every step. The chapter trains the layer both ways, from the same
# start on the same triplets, to measure what each costs.

# %% tags=["hide-input"]
# NBVAL_CHECK_OUTPUT
probe = StraightClassifier(settings.pyramid.config(len(cases[0].classes)))
levels = probe.trunk.eval().pyramid(torch.zeros(1, 1, 28, 28))
print(f"backbone {backbone}, input {input_size}x{input_size}: pyramid levels " + ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in levels.items()))
print(f"pooled, concatenated pyramid: {probe.trunk.feature_dim:,} features")
print(f"straight classifier: {sum(p.numel() for p in probe.parameters()):,} parameters; "
      f"embedding layer: {probe.trunk.feature_dim * embedding_dim + embedding_dim:,} trainable parameters")
del probe, levels

# %% [markdown]
# ## Running the procedure
#
# For every dataset and seed, {py:func}`lib.embedding_experiment.run_extension` runs the three
# steps and, for Eq. (6), trains a new 4-class straight classifier from scratch on the same images.
# Each dataset and seed is a unit ({py:mod}`lib.units`): its trainings checkpoint as they go, so
# re-running the chapter after an interruption resumes, and its finished record is reused.

# %%
runs = {}
for case, s in tqdm([(c, s) for c in cases for s in seeds], desc="cases x seeds"):
    runs[(case.name, s)] = experiment.run_extension(
        splits[(case.name, s)], settings, case.dataset, data[case.dataset].fingerprint, seed=s, device=torch_device,
        records=results.units, index_dir=results.dir / "index", case=case,
    )


def values(name: str, key: str) -> list[float]:
    """One accuracy per seed."""
    return [runs[(name, s)].accuracy[key] for s in seeds]


def seconds(name: str, key: str) -> list[float]:
    """One time per seed, seconds of the run's clock."""
    return [runs[(name, s)].seconds[key] for s in seeds]


images_per_s = np.mean([r.straight_images_per_s for r in runs.values()])
print(f"straight classifiers trained at {images_per_s:,.0f} images/s on {torch_device}")

# %% [markdown]
# ### Did the trainings converge?
#
# A claim that compares trained models is judged only on converged ones. The book's criterion here:
# each straight network's test accuracy moves by less than half a point over its last three
# epochs (the curves below, every seed), and each embedding layer's training was ended by the
# learning-rate rule rather than by the cap on its epochs.

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.2), squeeze=False)
for ax, name in zip(axes[0], names):
    for network, colour in (("straight3", "C0"), ("straight4", "C1")):
        for s in seeds:
            curve = runs[(name, s)].curves[network]
            ax.plot(range(1, len(curve) + 1), curve, color=colour, marker="o", markersize=3, alpha=0.7,
                    label=f"{network[-1]}-class network" if s == seeds[0] else None)
    ax.set(xlabel="epoch", ylabel="test accuracy", title=title[name])
    ax.legend(fontsize=8)
fig.tight_layout()
results.figure(fig, "straight_convergence")
plt.show()
curves_settled = all(converged(r.curves[k]) for r in runs.values() for k in ("straight3", "straight4"))
heads_settled = all(r.head_reports[stage].ended_by_rule() for r in runs.values() for stage in (MODEL3, MODEL4))
controls_settled = sum(r.head_reports[SOFTMAX_HEAD].ended_by_rule() for r in runs.values())
results.converged(curves_settled and heads_settled,
                  "each straight network's test accuracy moves by less than 0.5 points over its last 3 epochs, and the "
                  "learning-rate rule ended each embedding layer's training, every dataset and seed")
display(Markdown(f"Straight networks settled: **{'yes' if curves_settled else 'no'}**; embedding layers ended by the "
                 f"learning-rate rule: **{'yes' if heads_settled else 'no'}** "
                 f"({sum(r.head_reports[st].ended_by_rule() for r in runs.values() for st in (MODEL3, MODEL4))} of {2 * len(runs)}); "
                 f"the control's softmax heads, trained by the same rule, ended by it in {controls_settled} of {len(runs)} (reported, not a "
                 "condition of the claims, which are about the paper's method)."))

# %% [markdown]
# ## Step 1: the straight classifier
#
# Test accuracy on the starting classes' test images (the paper: 0.998 on both datasets), and where
# the mistakes fall (seed 0, rows = true class, columns = predicted). The paper's number is set
# beside the first triple of each dataset; Fashion-MNIST's hard triple (T-shirt against Pullover),
# when this run has it, is reported beside it.

# %% tags=["hide-input"]
lines = ["| dataset | straight 3-class network, test accuracy | paper |", "|---|---|---|"]
lines += [f"| {title[c.name]} | {percent_ci(values(c.name, STRAIGHT3), 2)} | {'99.8%' if c.name == c.dataset else '— (our hard triple; the paper names none)'} |"
          for c in cases]
display(Markdown("\n".join(lines)))
fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
for ax, name in zip(axes[0], names):
    confusion(ax, np.array(runs[(name, seeds[0])].confusion3), class_names[name][:-1],
              f"{title[name]}: straight 3-class network (seed {seeds[0]})")
fig.tight_layout()
results.figure(fig, "straight_confusion")
plt.show()
mistakes = []
for name in names:
    cm = np.array([runs[(name, s)].confusion3 for s in seeds]).sum(0)
    np.fill_diagonal(cm, 0)
    i, j = np.unravel_index(cm.argmax(), cm.shape)
    if cm.sum():
        mistakes.append(f"{title[name]}: {cm.sum()} mistakes over all seeds, most often {class_names[name][i]} "
                        f"taken for {class_names[name][j]} ({cm[i, j]})")
    else:
        mistakes.append(f"{title[name]}: no mistake over all seeds")
display(Markdown("In this run: " + "; ".join(mistakes) + "."))

# %% [markdown]
# ## Steps 2 and 3: the embedding generator, before and after the 4th class
#
# The triplet loss of every epoch, every seed (log scale); a dotted line marks a cut of the learning
# rate (seed 0). The rule is Keras' `ReduceLROnPlateau` with its absolute `min_delta`: an epoch
# counts as an improvement only if its loss is below the best so far by more than
# `lr_min_delta` (the dashed grey line). Once the loss is below that line it cannot improve by that
# much: the cuts come on schedule, every `lr_patience` epochs, not on the noise of a loss that
# barely moves. A loss of exactly 0 is drawn at the plot's floor, 1e-7. Training stops when the
# learning rate falls below `min_lr`; the further training on four classes starts again at
# `head_lr`, as the paper retrains "in the same manner as was the initial training".

# %% tags=["hide-input"]
fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 6.4), squeeze=False, sharex="col")
for col, name in enumerate(names):
    for ax, stage in zip(axes[:, col], (MODEL3, MODEL4)):
        for s in seeds:
            report = runs[(name, s)].head_reports[stage]
            line = ax.plot(range(1, len(report.losses) + 1), np.maximum(report.losses, 1e-7), marker="o", markersize=3, alpha=0.8,
                           label=f"seed {s} ({report.stopped})")[0]
            if s == seeds[0]:
                for epoch in [e + 1 for e in range(1, len(report.lrs)) if report.lrs[e] < report.lrs[e - 1]]:
                    ax.axvline(epoch - 0.5, color=line.get_color(), linestyle=":", linewidth=1)
        ax.axhline(lr_min_delta, color="grey", linestyle="--", linewidth=1, label=f"min_delta = {lr_min_delta:g}")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(yscale="log", ylabel="mean triplet loss, Eq. (3)", title=f"{title[name]}: {stage} generator")
        ax.legend(fontsize=6)
    axes[-1, col].set_xlabel("epoch")
fig.tight_layout()
results.figure(fig, "embedding_training")
plt.show()
agree = sum(r.same_head[stage] for r in runs.values() for stage in (MODEL3, MODEL4))
display(Markdown(f"The layer trained on cached features and the one trained with the trunk in every step took the same path "
                 f"(as many epochs, the same learning rates, losses equal to 0.1%) in {agree} of {2 * len(runs)} trainings."))

# %% [markdown]
# ### Table 2: classic classifiers on the embeddings
#
# Test accuracy (mean ± 95% interval over seeds) of each classifier trained on the embeddings of
# the 3-class generator (tested on the three classes) and of the generator trained further on
# four classes (tested on all four). The straight networks are the reference rows.

# %% tags=["hide-input"]
classifier_names = list(experiment.classic_classifiers(0, knn_k))
header = "| classifier | " + " | ".join(f"{title[n]}, {m}" for n in names for m in (MODEL3, MODEL4)) + " |"
lines = [header, "|---" * (1 + 2 * len(names)) + "|"]
table2 = []
for clf in classifier_names:
    lines.append(f"| {clf} | " + " | ".join(short_ci(values(n, on_embeddings(clf, m))) for n in names for m in (MODEL3, MODEL4)) + " |")
    table2 += [{"classifier": clf, "dataset": n, "model": m, "accuracy": values(n, on_embeddings(clf, m))} for n in names for m in (MODEL3, MODEL4)]
lines.append("| *straight network (reference)* | " + " | ".join(short_ci(values(n, key)) for n in names for key in (STRAIGHT3, STRAIGHT4)) + " |")
results.table("table2", table2)
display(Markdown("\n".join(lines)))

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 3.6), squeeze=False, sharey=True)
for ax, name in zip(axes[0], names):
    seed_points(ax, {c.replace(" (", "\n("): {m: values(name, on_embeddings(c, m)) for m in (MODEL3, MODEL4)} for c in classifier_names},
                "test accuracy")
    ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    ax.set_title(f"{title[name]}: every seed, and the mean with its 95% interval (n = {len(seeds)})", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
results.figure(fig, "table2_accuracy")
plt.show()

# %% [markdown]
# ### Is the extended system still usable?
#
# The paper judges Table 2 in words: adding the class costs no accuracy "in scale which would
# render the system unusable". The fair comparison is between two systems that do the same
# 4-class task on the same images: k-nearest neighbours on the embeddings of the generator trained
# further, against a straight 4-class network trained from scratch. We read "usable" as losing at
# most 5 points against it (our threshold: the paper gives none); a comparison between two methods
# trained alike, it needs converged runs.
#
# **Two controls**, on the same images, seeds and cached trunk features, each trained with the
# same care as the paper's route (the same NAdam start, plateau rule, `min_lr` and epoch cap):
#
# - *the cheap conventional extension*: the 3-class network's trunk frozen, a **new 4-output
#   softmax head** (the straight network's dense layers, drawn afresh) trained on the cached
#   features. It adds the class without retraining the trunk, as the embedding route does, but
#   changes the network's last layer, which the paper's route avoids;
# - *kNN on the trunk's raw features* (scaled to unit length, cosine like the embeddings), with no
#   triplet-trained layer at all: what the embedding layer adds over the features it starts from.
#
# The paper makes no claim about either; they stand beside the claim rows, not as rows of their own.

# %% tags=["hide-input"]
extension = {n: [a - b for a, b in zip(values(n, on_embeddings(KNN, MODEL4)), values(n, STRAIGHT4))] for n in names}
for name in names:
    results.claim(f"c1-extension-{name}", f"{title[name]}: the extended system stays usable (kNN on the 4-class embeddings minus a new 4-class network; at least −5 points)",
                  "no unusable loss", extension[name], AtLeast(-0.05), needs=Scale.CONVERGED, unit="points")
ext_rows = [("kNN on the extended embeddings (the paper's route)", on_embeddings(KNN, MODEL4), EQ7_CACHED),
            ("control: new softmax head on the frozen trunk", SOFTMAX4, CONTROL_SOFTMAX),
            ("control: kNN on the trunk's features, no triplet layer", KNN_RAW4, CONTROL_KNN),
            ("new 4-class network from scratch (Eq. 6)", STRAIGHT4, EQ6)]
lines = ["| way to 4 classes | " + " | ".join(f"{title[n]}: accuracy | seconds to add the class" for n in names) + " |", "|---" * (1 + 2 * len(names)) + "|"]
for label, key, route in ext_rows:
    lines.append(f"| {label} | " + " | ".join(f"{short_ci(values(n, key))} | {short_ci(seconds(n, route.name), 1)}" for n in names) + " |")
display(Markdown(f"Test accuracy on all four classes and the machine time of the extension ({CLOCKS[torch_device.type]}; cached trunk "
                 "features for the first three rows, from the 3-class network's trunk), mean ± 95% interval over seeds\n\n" + "\n".join(lines)))
results.table("extension_and_controls", [{"case": n, "way": label, "accuracy": values(n, key), "seconds": seconds(n, route.name)}
                                          for n in names for label, key, route in ext_rows])
control_gap = {n: [a - b for a, b in zip(values(n, on_embeddings(KNN, MODEL4)), values(n, SOFTMAX4))] for n in names}
raw_gap = {n: [a - b for a, b in zip(values(n, on_embeddings(KNN, MODEL4)), values(n, KNN_RAW4))] for n in names}
display(Markdown("\n".join(
    f"- {title[n]}: kNN on the extended embeddings minus the new network, {points_ci(extension[n])} ({compared(extension[n])} zero); "
    f"minus the control's softmax head on the frozen trunk, {points_ci(control_gap[n])} ({compared(control_gap[n])} zero); "
    f"minus kNN on the trunk's raw features, {points_ci(raw_gap[n])} ({compared(raw_gap[n])} zero)."
    for n in names)))

# %% [markdown]
# ## Beyond the paper: how much of the extension needs the further training?
#
# Three ways to a 4-class model, tested on all four classes: the paper's (train the generator
# further, then kNN), none at all (embed the new class with the *3-class* generator, then kNN or
# the nearest class mean), and the straight 4-class network from scratch. The second table asks
# what the starting classes lose when the class is added ("forgetting").

# %% tags=["hide-input"]
rows = [("kNN, no further training", no_further(KNN), no_further(KNN, added_only=True)),
        ("nearest class mean, no further training", no_further(CENTROID), no_further(CENTROID, added_only=True)),
        ("kNN after further training (the paper)", on_embeddings(KNN, MODEL4), None),
        ("straight 4-class network from scratch", STRAIGHT4, None)]
lines = ["| route to 4 classes | " + " | ".join(f"{title[n]}, all 4 | {title[n]}, added class" for n in names) + " |", "|---" * (1 + 2 * len(names)) + "|"]
for label, key, added_key in rows:
    lines.append(f"| {label} | " + " | ".join(f"{short_ci(values(n, key))} | {short_ci(values(n, added_key)) if added_key else '—'}" for n in names) + " |")
lines += ["", "| starting classes' test images | " + " | ".join(f"{title[n]}" for n in names) + " |", "|---" * (1 + len(names)) + "|"]
for label, key in (("kNN, 3-class model (before)", KNN_OLD_BEFORE), ("kNN, 4-class model (after)", KNN_OLD_AFTER),
                   ("straight 3-class network (before)", STRAIGHT3), ("straight 4-class network (after)", STRAIGHT4_OLD)):
    lines.append(f"| {label} | " + " | ".join(short_ci(values(n, key)) for n in names) + " |")
display(Markdown("\n".join(lines)))
route_keys = [k for _, key, added_key in rows for k in (key, added_key) if k]
route_keys += [KNN_OLD_BEFORE, KNN_OLD_AFTER, STRAIGHT4_OLD]
results.table("routes_and_forgetting", [{"dataset": n, "key": k, "accuracy": values(n, k)} for n in names for k in route_keys])
forgetting = {n: [a - b for a, b in zip(values(n, KNN_OLD_AFTER), values(n, KNN_OLD_BEFORE))] for n in names}
display(Markdown("\n".join(
    f"- {title[n]}: without further training, kNN finds the added class in {percent_ci(values(n, no_further(KNN, added_only=True)))} of its test images; "
    f"training further changes the starting classes' kNN accuracy by {points_ci(forgetting[n])} ({compared(forgetting[n])} zero)."
    for n in names)))

# %% [markdown]
# ## Time costs: Eqs. (4)–(7), measured
#
# The paper's time to build each system and to add a class to it:
#
# $$ t_{\text{com.f.}} = t_{\text{d.p.}} + t_{\text{imp.}} + t_{\text{tr.}} \quad (4) \qquad
#    t_{\text{emb.f.}} = t_{\text{d.p.}} + t_{\text{imp.}} + t_{\text{tr.}} + t_{\text{imp.c.}} + t_{\text{tr.c.}} \quad (5)$$
#
# $$ t_{\text{com.ex.}} = t_{\text{a.d.}} + t_{\text{mod.}} + t_{\text{tr.}} \quad (6) \qquad\qquad
#    t_{\text{emb.ex.}} = t_{\text{a.d.}} + t_{\text{add.tr.}} + t_{\text{tr.c.}} \quad (7)$$
#
# Preparing the data ($t_{\text{d.p.}}$, $t_{\text{a.d.}}$), writing code ($t_{\text{imp.}}$,
# $t_{\text{mod.}}$) are a person's work, the same for both or not measurable here; the book
# measures the machine's part of every equation, each step on the run's clock (below), in two
# settings. **As Keras trains** (the paper's setting): the frozen trunk runs on every image of every
# triplet of every step, and again to embed the training set. **Cached**: the trunk runs once per
# image and the layer trains on its stored output (the same function, so the same result). Eq. (5)
# includes training the embedding layer and the classic classifiers (the paper's $t_{\text{tr.}}$
# covers every network it trains); Eq. (7)'s additional training is the layer's further training,
# then re-embedding and refitting.

# %% tags=["hide-input"]
clock_name = CLOCKS[torch_device.type]
shown_routes = (*ROUTES, *CONTROLS)
fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4.2), squeeze=False)
time_rows = []
for ax, name in zip(axes[0], names):
    for i, route in enumerate(shown_routes):
        left = 0.0
        for j, step in enumerate(route.steps):
            m = float(np.mean(seconds(name, step)))
            ax.barh(i, m, left=left, color=plt.get_cmap("tab20")(hash(step) % 20), edgecolor="white", linewidth=0.5)
            left += m
        total = mean_ci(seconds(name, route.name))
        if total.n > 1:
            ax.errorbar(total.mean, i, xerr=[[total.mean - total.low], [total.high - total.mean]], color="black", capsize=3)
        time_rows.append({"dataset": name, "route": route.name, "seconds": seconds(name, route.name),
                          "steps": {step: seconds(name, step) for step in route.steps}})
    ax.set_yticks(range(len(shown_routes)), [r.name.replace(": ", ":\n") for r in shown_routes], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=f"seconds ({clock_name}; mean of {len(seeds)} seeds)", title=title[name])
fig.tight_layout()
results.figure(fig, "time_costs")
plt.show()
results.table("time_costs", time_rows)


def log_ratio(name: str, top, bottom) -> list[float]:
    """Per seed: ln of the summed seconds of the routes ``top`` over those of ``bottom`` (a route or a tuple of them).
    Judged on the log, so that an interval of a ratio can never reach below zero; shown as its exp."""
    total = lambda routes, s: sum(runs[(name, s)].seconds[r.name] for r in (routes if isinstance(routes, tuple) else (routes,)))  # noqa: E731
    return [float(np.log(total(top, s) / total(bottom, s))) for s in seeds]


def times(logs: list[float]) -> str:
    """A ratio from its logs: the geometric mean over seeds, and exp of the 95% interval of the logs."""
    ci = mean_ci(logs)
    return f"{np.exp(ci.mean):.2f}× [{np.exp(ci.low):.2f}, {np.exp(ci.high):.2f}]" if ci.n > 1 else f"{np.exp(ci.mean):.2f}× (one seed)"


lines = ["| case | Eq. (4) | Eq. (5), as Keras | Eq. (5), cached | Eq. (6) | Eq. (7), as Keras | Eq. (7), cached | Eq. 6 ÷ Eq. 7, as Keras | Eq. 6 ÷ Eq. 7, cached |",
         "|---" * 9 + "|"]
for n in names:
    lines.append(f"| {title[n]} | " + " | ".join(short_ci(seconds(n, r.name), 1) for r in ROUTES) + " | "
                 f"{times(log_ratio(n, EQ6, EQ7_KERAS))} | {times(log_ratio(n, EQ6, EQ7_CACHED))} |")
display(Markdown(f"Seconds ({clock_name}), mean ± 95% interval over seeds; each ratio is the geometric mean over seeds with the exp of "
                 "the 95% interval of its logarithm; above 1, the embedding route adds the class faster.\n\n" + "\n".join(lines)))

# %% [markdown]
# **The time claims, as the paper states them.** Eq. (5) contains Eq. (4), so the embedding route
# always costs more to build: the chapter shows that in the table and does not judge it. What the
# run can answer is each part of the paper's argument that a clock can see; the person's work
# ($t_{\text{imp.}}$, $t_{\text{imp.c.}}$, $t_{\text{mod.}}$) is outside every measurement, so each
# reading is of the machine's part alone. Both are judged in the paper's own setting (as Keras
# trains), on the logarithm of the ratio, per seed: above 0 means the first time is the larger.
#
# - `c1-time-extend-*`, **the premise** "$t_{add.tr} \leq t_{tr}$" with the machine's part of its
#   conclusion: adding the class the embedding way (Eq. 7: the further training, re-embedding,
#   refitting the classic classifiers) takes less machine time than training a new network
#   (Eq. 6): ln(Eq. 6 ÷ Eq. 7) > 0. The paper's "significantly smaller" asks more; a ratio above 1
#   is the least its words require, so that is the rule. Judged on every case.
# - `c1-time-mnist-not-justified`, **the conclusion for MNIST**, "the time costs for implementing
#   and training the discussed approach do not justify the stated advantages": building the
#   embedding route and adding one class to it (Eq. 5 + Eq. 7) takes longer than building a
#   conventional network and training a new one for the added class (Eq. 4 + Eq. 6):
#   ln((Eq. 5 + Eq. 7) ÷ (Eq. 4 + Eq. 6)) > 0. Unlike Eq. 5 against Eq. 4 this can fail: a cheap
#   enough extension pays back the route's cost. The paper's other half, that harder images may
#   favour the route, names no task this book runs, so it is not judged.
#
# The ratios are measured with the CPU-sized network at 28 px on this machine's clock, a stand-in
# for the paper's ResNet50V2 at 128 px on its GPU: the trunk's share of the cost grows with the
# network and the image, so the row names the stand-in, and the full profile is the paper's setting.
# The control's cheap conventional extension (a new softmax head on the frozen trunk) is set beside
# them below; the paper makes no claim about it.

# %% tags=["hide-input"]
TIME_STAND_IN = "CPU-sized ResNet+FPN at 28 px, timed on this CPU"
for name in names:
    results.claim(f"c1-time-extend-{name}", f"{title[name]}: adding a class the embedding way takes less machine time than a new network "
                  "(ln of Eq. 6 ÷ Eq. 7, as Keras trains; the premise t_add.tr ≤ t_tr)",
                  "ln > 0", log_ratio(name, EQ6, EQ7_KERAS), Above(0.0), needs=Scale.PAPER, unit="ln ×", timing=True, stand_in=TIME_STAND_IN)
if "mnist" in names:
    results.claim("c1-time-mnist-not-justified", "MNIST: the embedding route, built and extended once, takes more machine time than conventional "
                  "networks (ln of (Eq. 5 + Eq. 7) ÷ (Eq. 4 + Eq. 6), as Keras trains)",
                  "ln > 0", log_ratio("mnist", (EQ5_KERAS, EQ7_KERAS), (EQ4, EQ6)), Above(0.0), needs=Scale.PAPER, unit="ln ×", timing=True,
                  stand_in=TIME_STAND_IN)
results.show_claims([c for c in results.claims if c["id"].startswith("c1-time")])
display(Markdown("\n".join(
    f"- {title[n]}: building the embedding route took {times(log_ratio(n, EQ5_KERAS, EQ4))} a conventional network's time as Keras trains "
    f"({times(log_ratio(n, EQ5_CACHED, EQ4))} cached); a new network took {times(log_ratio(n, EQ6, EQ7_KERAS))} the embedding route's "
    f"extension as Keras trains, {times(log_ratio(n, EQ6, EQ7_CACHED))} with cached features, and "
    f"{times(log_ratio(n, EQ6, CONTROL_SOFTMAX))} the control's new softmax head on the frozen trunk; the embedding route's cached "
    f"extension took {times(log_ratio(n, EQ7_CACHED, CONTROL_SOFTMAX))} the control's time. Built and extended once, the embedding route "
    f"took {times(log_ratio(n, (EQ5_KERAS, EQ7_KERAS), (EQ4, EQ6)))} the conventional networks' time as Keras trains."
    for n in names)))

# %% [markdown]
# ## Similarity search
#
# The training set's embeddings go into a FAISS {cite:p}`douze2024faiss` inner-product index (exact; on unit vectors that
# is cosine similarity), which is saved to disk and read back before it is searched
# ({py:class}`lib.similarity_search.VectorIndex`). The added class's vectors, embedded by the
# 3-class generator, are then appended to the same index: no rebuild, no retraining. Precision@k
# is the share of a test query's `search_k` nearest training images that share its class.

# %% tags=["hide-input"]
search_keys = list(runs[(names[0], seeds[0])].search)
lines = ["| index, queries | " + " | ".join(title[n] for n in names) + " |", "|---" * (1 + len(names)) + "|"]
lines += [f"| {k} | " + " | ".join(short_ci([runs[(n, s)].search[k] for s in seeds]) for n in names) + " |" for k in search_keys]
display(Markdown(f"precision@{search_k}, mean ± 95% interval over seeds\n\n" + "\n".join(lines)))
results.table("precision_at_k", [{"dataset": n, "index": k, "k": search_k, "precision": [runs[(n, s)].search[k] for s in seeds]} for n in names for k in search_keys])

# %% tags=["hide-input"]
for name in names:
    run, sp = runs[(name, seeds[0])], splits[(name, seeds[0])]
    shown = min(search_k, 8)
    images, titles = [], []
    labels_ = class_names[name]
    for q, neighbours in zip(run.query_ids, run.neighbours):
        images.append(sp.test.images[q])
        titles.append(f"query: {labels_[int(sp.test.labels[q])]}"[:18])
        for i in neighbours[:shown]:
            hit = int(sp.train.labels[i]) == int(sp.test.labels[q])
            images.append(sp.train.images[i])
            titles.append("✓" if hit else f"✗ {labels_[int(sp.train.labels[i])]}"[:14])
    fig = image_grid(torch.stack(images), titles, ncols=shown + 1, scale=0.9,
                     title=f"{title[name]}: queries (first column) and their {shown} nearest training images in the extended index (seed {seeds[0]})")
    results.figure(fig, f"search_grid_{name}")
    plt.show()

# %% [markdown]
# ## Beyond the paper: the embedding space before and after
#
# t-SNE {cite:p}`vandermaaten2008tsne` maps of test embeddings (seed 0), all four classes: left, every image embedded by the
# 3-class generator, which never saw the added class; right, by the generator trained further.

# %% tags=["hide-input"]
if tsne_points > 0:
    fig, axes = plt.subplots(len(names), 2, figsize=(9, 4.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        run, sp = runs[(name, seeds[0])], splits[(name, seeds[0])]
        pick = run.map_rows
        labels_ = class_names[name]
        for ax, stage in zip(row, (MODEL3, MODEL4)):
            xy = TSNE(n_components=2, init="pca", perplexity=min(30, len(pick) - 1), random_state=seeds[0]).fit_transform(run.maps[stage].numpy())
            for c, label in enumerate(labels_):
                at = sp.test.labels[pick].numpy() == c
                ax.scatter(xy[at, 0], xy[at, 1], s=6, label=label + (" (added)" if c == len(labels_) - 1 else ""),
                           marker="x" if c == len(labels_) - 1 else "o")
            ax.set(xticks=[], yticks=[], title=f"{title[name]}: {stage.removesuffix(' model')} generator")
        row[0].legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    results.figure(fig, "tsne_before_after")
    plt.show()

# %% [markdown]
# ## The paper's claims, judged
#
# The straight network's 0.998 is an absolute accuracy on all 6,000 training images of each class.
# A smaller network trained to convergence on all of them tests it fairly in one direction and
# nearly so in the other: a 3-class problem this easy is not limited by the network's size (the
# cpu profile's small network is named as the stand-in; a run on a subset of the images cannot
# test it). On Fashion-MNIST the score also depends on the three classes, which the paper does not
# name: it is judged on our triple Trouser, Sandal, Bag, where its number is plausible, and the
# hard triple's accuracy is reported in the Step 1 table, not judged. The rule: at least 0.998 less
# 0.002, the paper's last printed digit and one more of rounding and seed noise.

# %% tags=["hide-input"]
for case in [c for c in cases if c.name == c.dataset]:  # each dataset's first class choice
    untestable = (f"this run trains on {train_per_class:,} of the paper's 6,000 images per class; a run on all of them would test it"
                  if train_per_class < 6000 and results.scale >= Scale.PAPER else None)  # below, "needs a larger run" says it
    results.claim(f"c1-straight-{case.name}", f"straight 3-class network, {title[case.name]} test accuracy", 0.998, values(case.name, STRAIGHT3),
                  AtLeast(0.998, tolerance=0.002), needs=Scale.PAPER, untestable=untestable,
                  stand_in="CPU-sized ResNet+FPN at 28 px, all training images")
results.show_claims()

# %% [markdown]
# ### At larger scales
#
# The **cpu** profile (`chapters/profiles/01_embeddings_extendable_classification.cpu.yaml`) uses
# all training and test images of the four classes, both Fashion-MNIST triples, a CPU-sized pre-activation ResNet and FPN at
# native resolution, and trains the straight network for twice the paper's epochs on MNIST (8) and
# 1.5 times on Fashion-MNIST (12) under a one-cycle learning rate, since at the paper's epochs and
# constant rate the small network's test accuracy was still swinging by more than half a point; the **full** profile (`….full.yaml`) is the paper's
# setting, ResNet50V2 + FPN at 128 × 128 with lr 1e-4, on a GPU. Their committed results are shown
# here as saved, with their run cards; each executed notebook is in
# `results/<profile>/01_embeddings_extendable_classification/`.

# %% tags=["hide-input"]
stronger = show_stronger_profiles(results_root, results.chapter, profile,
                                  ["table2_accuracy", "time_costs", "embedding_training", "straight_confusion", *(f"search_grid_{n}" for n in names),
                                   "tsne_before_after"])

# %% [markdown]
# **Readings changed since the earlier cpu run**, and why. Each rule below was written from
# the paper's wording before the run that judges it; the earlier reading stays beside the new one.

# %% tags=["hide-input"]
CHANGES = {
    "c1-time-initial-mnist": "dropped: Eq. 5 contains Eq. 4, so 'the embedding route costs more to build' could not fail; the measured times stay in "
    "the time table, and the paper's MNIST conclusion is judged as c1-time-mnist-not-justified",
    "c1-time-mnist-not-justified": "added: the paper's MNIST conclusion ('do not justify the stated advantages'), read as the route built and extended "
    "once against conventional networks, Eq. 5 + Eq. 7 over Eq. 4 + Eq. 6, ln > 0; judged on the stand-in's clock",
    "c1-time-extend-mnist": "restated as the paper's premise t_add.tr ≤ t_tr (Eq. 6 over Eq. 7, machine time only) and judged on ln of the ratio "
    "(an interval of the ratio itself reached below zero); judged with the stand-in named instead of hidden as needing the paper's scale; "
    "the embedding layer now stops by Keras' absolute min_delta",
    "c1-time-extend-fashion-mnist": "as c1-time-extend-mnist; and now on our triple Trouser, Sandal, Bag + Ankle boot (the earlier triple is "
    "c1-time-extend-fashion-mnist-012); its earlier interval, wholly below 1, had been hidden as needing the paper's scale",
    "c1-time-extend-fashion-mnist-012": "added: the earlier c1-time-extend-fashion-mnist's triple (T-shirt/top, Trouser, Pullover + Dress), "
    "on ln of the ratio, with the stand-in named",
    "c1-extension-mnist": "same claim and rule; the embedding layer's stopping rule is now Keras' absolute min_delta (PyTorch's relative "
    "threshold had cut the rate on the noise of a loss near 1e-4), and the controls are reported beside it",
    "c1-extension-fashion-mnist": "now on our triple Trouser, Sandal, Bag + Ankle boot (the earlier triple is c1-extension-fashion-mnist-012); "
    "Keras' absolute min_delta as for MNIST",
    "c1-extension-fashion-mnist-012": "added: the earlier c1-extension-fashion-mnist's triple, the hard case",
    "c1-straight-mnist": "judged at the cpu scale with the stand-in named (a small network trained to convergence on all training images), "
    "instead of hidden as needing the paper's scale",
    "c1-straight-fashion-mnist": "judged on our triple Trouser, Sandal, Bag, where the paper's number is plausible, with the stand-in named; "
    "it was untestable only because of the triple chosen (T-shirt against Pullover), whose accuracy is now reported beside it",
}
kept = {c["id"] for run in earlier(Path(results_root) / "cpu" / results.chapter) for c in run["claims"]}  # the committed cpu readings
results.show_changed_readings(results_root, {k: why for k, why in CHANGES.items() if k in kept or k in {c["id"] for c in results.claims}},
                              stronger)  # a claim of a case this profile does not run is left to the profile that runs it

# %% [markdown]
# ### Sanity checks
# Code health, not results: each check says that the code ran as intended (a classifier, and the
# classic classifier on the embeddings before and after the added class, beat chance), with a bound
# that holds for any seed and any valid choice of classes. Each bound sits halfway between chance (a
# third with three classes, a quarter with four) and the worst value measured over seeds 0–20 and the
# other class choices of `benchmarks/any_choice.py` (a safety factor of 2). A failed check still
# saves this run's results, then stops the run.

# %% tags=["hide-input"]
if not smoke:  # a smoke run's tiny settings cannot reach these
    grid = "seeds 0-20 and three other class choices, benchmarks/any_choice.py"
    for case in cases:
        name, chance3, chance4 = case.name, 1 / len(case.classes), 1 / (len(case.classes) + 1)
        results.check(f"{name}: straight classifier's accuracy", values(name, STRAIGHT3), above=chance3 + 0.26, reference=chance3,
                      measured=f"{grid}: worst 0.860, chance + 0.527 (MNIST, classes 4 7 9, add 2); bound halfway")
        results.check(f"{name}: kNN on the embeddings", values(name, on_embeddings(KNN, MODEL3)), above=chance3 + 0.28, reference=chance3,
                      measured=f"{grid}: worst 0.903, chance + 0.570 (Fashion-MNIST, seeds 18-20); bound halfway")
        results.check(f"{name}: kNN on the extended embeddings", values(name, on_embeddings(KNN, MODEL4)), above=chance4 + 0.29,
                      reference=chance4, measured=f"{grid}: worst 0.830, chance + 0.580 (Fashion-MNIST, classes 4 7 9, add 2); bound halfway")
    # Not checked: whether further training lowers the triplet loss. The loss is near zero from the first
    # epoch, and on a hard added class (Pullover beside Coat) it rose in 1 of the grid's 30 trainings
    # (last over first 1.19): an outcome, not code health. The extended embeddings' kNN check covers it.
    # identities, not measurements: a share lies in [0, 1], and Eq. 5's steps include Eq. 4's
    assert all(0 <= v <= 1 for name in names for s in seeds for v in runs[(name, s)].search.values())
    assert all(r.seconds[EQ5_KERAS.name] > r.seconds[EQ4.name] for r in runs.values()), "Eq. 5 contains Eq. 4: it cannot cost less"
results.save(
    device=torch_device, data=[data[n].provenance for n in datasets],
    initialisation="random (He normal for convolutions, PyTorch defaults elsewhere), seeded per run; no pretrained weights",
    extra={"trainings": sum(r.trainings for r in runs.values()),
           "straight_classifier_images_per_s": round(float(images_per_s), 1), "clock": clock_name},
)
results.show_saved()
results.stop_on_failed_checks()

# %% [markdown]
# ## Recap
#
# What this run found (every number from the run above; the claims table says which its scale can
# test):

# %% tags=["hide-input"]
verdicts = {c["id"]: c["verdict"] for c in results.claims}
recap = ["- **The procedure runs as the paper describes it**: a straight classifier, its frozen trunk under a 64-d embedding layer "
         "trained with cosine triplets, classic classifiers on the embeddings, and a 4th class added by training the same layer further."]
for n in names:
    recap.append(f"- **{title[n]}**: the straight network reaches {percent_ci(values(n, STRAIGHT3), 2)} on three classes; "
                 f"kNN on the extended embeddings scores {points_ci(extension[n])} against a new 4-class network "
                 f"(verdict: {verdicts[f'c1-extension-{n}']}) and {points_ci(control_gap[n])} against the control's new softmax head on the "
                 f"frozen trunk; adding the class took a new network {times(log_ratio(n, EQ6, EQ7_KERAS))} the "
                 f"embedding route's time as Keras trains (verdict: {verdicts[f'c1-time-extend-{n}']}).")
if "c1-time-mnist-not-justified" in verdicts:
    recap.append(f"- **MNIST, built and extended once**: the embedding route took {times(log_ratio('mnist', (EQ5_KERAS, EQ7_KERAS), (EQ4, EQ6)))} "
                 f"the conventional networks' machine time (verdict: {verdicts['c1-time-mnist-not-justified']}).")
recap.append("- **The extended FAISS index** answers queries for the new class without being rebuilt; the precision@k table sets it "
             "against an index rebuilt from the generator trained further.")
display(Markdown("\n".join(recap)))
results.show_summary(
    stronger,
    method="The paper's three steps (a ResNet+FPN straight classifier; its frozen trunk under a 64-d layer trained with cosine triplets; "
    "classic classifiers on the embeddings; a 4th class added by training the layer further) re-implemented in PyTorch, over several seeds, "
    "on MNIST and two Fashion-MNIST triples of our choosing; Eqs. (4)-(7) timed step by step, as Keras trains and with cached features; "
    "two controls (a new softmax head on the frozen trunk, kNN on the trunk's raw features) trained on the same features by the same rule.",
    easy="The procedure is short and fully described apart from a few hyper-parameters; the frozen trunk makes the embedding layer cheap "
    "to train on cached features, and the FAISS index grows with the new class without a rebuild.",
    difficult="Table 2's values are missing from the paper's text, so the extension claim is judged on its words with a threshold of ours; "
    "the stopping rule is garbled ('a learning rate lower than 5000'), and the triplet loss is small from the first epochs, so the plateau rule's "
    "min_delta decides when training stops; the paper measures no time, and its time argument is conditional and mostly about people's work.",
    left_open="Which three classes of each dataset the paper used; the margin m of Eq. (3); the dense layers, batch size and plateau "
    "patience; whether the backbone started from ImageNet weights; Table 2's numbers; and any measured time.",
)

# %% [markdown]
# **Deviations from the paper**
#
# - Table 2's values are not in the paper's text as the book has it; the extension claim is
#   judged against the paper's words, with a 5-point threshold that is ours, and against a new
#   4-class network rather than against the 3-class task.
# - The quick profile uses a small pre-activation ResNet at 28 × 28 with a 16-channel pyramid,
#   a subset of images per class and lr 1e-3; the cpu profile all images, more epochs and a
#   one-cycle rate so that its small network converges; the full profile is the paper's setting.
# - The backbone is pre-activation (v2) like Keras' ResNet50V2, with the stride in the first block
#   of a stage as He et al. place it (Keras puts it in the last). The paper does not say whether
#   the backbone started from ImageNet weights; here it starts from random weights.
# - The straight classifier's dense layers, the batch size, the margin `m` and the plateau
#   schedule are not given in the paper; the parameters cell states our choices.
# - Eq. (3)'s sign and the stopping rule: see the note at the top. Times are the machine's part of
#   Eqs. (4)–(7) only, on the clock named above, and time ratios are judged on their logarithm.
# - The classes: the paper names none. MNIST's 0, 1, 2 + 3 and Fashion-MNIST's Trouser, Sandal,
#   Bag + Ankle boot (the triple that judges the 0.998) and T-shirt/top, Trouser, Pullover + Dress
#   (the hard case) are our choices.
# - The controls (a new softmax head on the frozen trunk, kNN on the trunk's features) are ours.
#
# **Exercises**
#
# Each solution's command files its results under `../exercises/` (`-p results_root ../exercises`),
# beside the book's own `results/`, so the book's quick results and its scorecard stay those of the
# chapter as published.
#
# ````{exercise}
# :label: ch1-ex-triple
#
# Choose a harder MNIST triple: `classes = [4, 7, 9]` and `added_class = 2`. Where do the straight
# network's mistakes fall, and does the extended embedding still keep up with a new network?
# ````
#
# ````{solution} ch1-ex-triple
# :class: dropdown
#
# Run `python -m lib.run chapters/01_embeddings_extendable_classification.py -p datasets "[mnist]" -p classes "[4, 7, 9]" -p added_class 2 -p results_root ../exercises`
# and read the Step 1 table, its confusion matrix and the extension table. 4 and 9 share a closed
# upper loop and a stem, 7 and 9 a stem and a bar: expect most of the straight network's mistakes
# between 4 and 9, and the added 2 to be easy for kNN on the extended embeddings, since it shares
# no shape with them. This triple was the worst of `benchmarks/any_choice.py`'s grid for the
# straight network, which is why the sanity checks' bounds are measured on it.
# ````
#
# ````{exercise}
# :label: ch1-ex-margin
#
# Set `margin = 0.0`. What happens to the triplet loss, the stopping epoch and Table 2?
# ````
#
# ````{solution} ch1-ex-margin
# :class: dropdown
#
# With no margin, Eq. (3) is zero for every triplet whose positive is already more similar to the
# anchor than its negative: only the violated triplets give a gradient, and there are few once the
# classes separate. Expect the triplet loss in the training figure to fall close to zero within the
# first epochs, the plateau rule to cut the learning rate early, and training to stop sooner. The
# embedding then separates the classes only just: nearest-neighbour and SVM accuracies in Table 2
# usually survive, while classifiers that rely on compact classes (naive Bayes in Table 2) are the
# first to lose accuracy, most of all after the 4th class is added into a space whose classes were
# never pushed apart. (Run it with `-p margin 0.0 -p results_root ../exercises`.)
# ````
#
# ````{exercise}
# :label: ch1-ex-finetune
#
# In the cached setting, the embedding route adds a class cheaply because the frozen trunk runs
# once per image. Where, in the time table, would the balance tip if the trunk were fine-tuned too?
# ````
#
# ````{solution} ch1-ex-finetune
# :class: dropdown
#
# Eq. (7) with cached features costs the trunk's forward pass over the added class's images once,
# the embedding layer's training on cached features, re-embedding and refitting the classic
# classifiers. Fine-tuning the trunk would replace the single pass and the training on cached
# features by backward passes through the whole trunk on every triplet's three images, epoch after
# epoch: more work than Eq. (6), a new 4-class network, which sees each image once an epoch. The
# cached column of Eq. (6) ÷ Eq. (7) would fall towards, or below, the "as Keras trains" column,
# whose layer already runs the trunk forward on every triplet; only the extended model's accuracy
# could then justify the route.
# ````
