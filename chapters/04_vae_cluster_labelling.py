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
# # Chapter 4 — Labelling a VAE's latent clusters through their decoded centres
#
# **Paper.** *Image Classification using Unlabelled Data — A Semisupervised Approach using
# Variational Autoencoder and Topdown Hierarchical Clustering* (`shared/papers/4-vae-cluster-labelling.txt`)
# {cite:p}`vae_topdown_clustering`.

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
from lib import vae_experiment
from lib.reporting import run_this_chapter

run_this_chapter("04_vae_cluster_labelling", vae_experiment)

# %% [markdown]
# **The claim.** A variational autoencoder (VAE) {cite:p}`kingma2014vae` with a softmax head on its latent vector `z`
# learns to classify MNIST {cite:p}`lecun1998mnist` digits without the dataset's labels. After each epoch the training
# latents are clustered with k-means (scikit-learn's, seeded by k-means++ {cite:p}`arthur2007kmeanspp`; k by the elbow method), each cluster centre is decoded to an
# image, and a person labels that image with a digit and a confidence `p_c`. A centre that is not a
# valid digit has its cluster split again. Every image of a cluster inherits its centre's label with
# the confidence
#
# $$ w_n = p_c\, e^{-a d_n} \qquad (2)$$
#
# where $d_n$ is its distance to the centre, and the next epoch minimises
#
# $$ L = \underbrace{-\sum_{ij}\big(x_{ij}\ln\hat x_{ij} + (1-x_{ij})\ln(1-\hat x_{ij})\big) + \beta\,\mathrm{KL}\big(q(z\mid x)\,\|\,\mathcal N(0, I)\big)}_{L_{VAE},\ (1)} \;-\; \gamma \sum_n w_n\, y_n \ln \hat y_n \qquad (3)$$
#
# with β = 5 (a β-VAE's weight {cite:p}`higgins2017betavae`) and γ = 150. The paper reports **75% test accuracy after 5 epochs, labelling only
# 10–16 images an epoch**, a **6–10 point gain in "reconstruction accuracy"** from the
# classification term, and reconstruction accuracy that grows with `z_dim` up to 10 and **little
# beyond it** (its Fig. 5).
#
# **What this chapter shows.** The method run end to end, every figure of the paper redrawn with
# the mean and 95% interval over seeds, each claim judged at the scale that can test it, and the
# questions the paper leaves open: how much does the number of clusters (which the paper's elbow
# rule chose, over a range it does not give) decide the accuracy? Is labelling cluster centres
# better than labelling as many random images an epoch, given as much supervision? How much is
# lost to the annotator misreading blurred centres (an oracle that labels each centre with its
# cluster's majority digit)? Does the VAE matter, or would k-means on raw pixels do?
#
# ```{note}
# **The annotator is simulated, and a separate judge grades the reconstructions.** The paper's
# annotator is a person looking at decoded centres. Here it is a small CNN trained on MNIST images
# that the VAE never sees (a disjoint, stratified part of the training set). It is shown only the
# decoded centre image, never the labels of the cluster's members; its label is its arg-max and its
# confidence `p_c` its softmax maximum. Every image it is shown is counted as a label spent.
# "Reconstruction accuracy" (the share of reconstructed validation images recognised as their true
# digit) is judged by a *second* CNN trained on yet other images, so the network whose labels shaped
# the VAE never grades its reconstructions.
# ```

# %% tags=["parameters"]
profile = "quick"  # "quick": these defaults (CPU, minutes); "full": chapters/profiles/04_vae_cluster_labelling.full.yaml
seeds = [0, 1]  # one training per seed and setting; every number is a mean with its 95% interval
device = "auto"  # "auto": CUDA when available, else the CPU
results_root = "../results"  # results/<profile>/<chapter>/ receives results.json, figures/ and checkpoints/
smoke = False  # True: a plumbing test with tiny settings, which skips the sanity checks that such settings cannot pass
split_seed = 0  # seed of the stratified annotator / judge / validation / training split
n_train = 6000  # VAE training images, labels unused (paper §3.1: 59,872)
n_val = 500  # validation images for reconstruction accuracy (paper §3.2: 128)
n_annotator = 5000  # images the simulated annotator learns from, never seen by the VAE
n_judge = 5000  # images the judge of reconstructions learns from, seen by neither
n_test = 2000  # MNIST test images used for test accuracy, a stratified subset (paper: all 10,000)
annotator_epochs = 2  # epochs of the annotator's (and the judge's) training
z_dim = 10  # latent dimension of the semi-supervised model (paper §4: 10)
hidden = [512, 128, 32]  # encoder widths, decoder mirrored (paper §4: third layer 32; the others are not given)
beta = 5.0  # KL weight in Eq. (1) (paper §3.3: 5)
gamma = 150.0  # classification weight in Eq. (3) (paper Fig. 4: 150)
epochs = 5  # training epochs (paper §4: 5)
unsupervised_epochs = 1  # epochs of Eq. (1) alone before the first labelling (paper §4: 1)
lr = 0.002  # Adam learning rate (not given in the paper)
batch_size = 64  # images per step (not given; Keras' default: 32)
k_min = 4  # smallest k the elbow method considers
k_max = 15  # largest k the elbow method considers
elbow_sample = 2000  # latents used to choose k; the final k-means uses all
valid_confidence = 0.5  # below this confidence a decoded centre is "not a valid digit"
a = 1.0  # distance decay of Eq. (2), per unit of latent distance (not given in the paper)
z_dims = [2, 10]  # latent dimensions swept with gamma 0, the paper's Fig. 5 (full: [2, 10, 20], its ranges below and above 10)
budget_ks = []  # first-level clusters fixed to these k (the paper's 10-16 labels an epoch), each beside its random control (full: [10, 16])
paper_k = 0  # the arm judged against the paper: one of budget_ks, or 0 for the elbow arm (full: 10, the paper's 10-16 labels an epoch)
oracle = False  # control: the judged arm again, each centre labelled with its cluster's majority true digit (full: True)
beta_control = 0.0  # > 0: the judged arm and the plain VAE again at this KL weight, beside beta's (full: 1.0; 0: not run)

# %% tags=["hide-input"]
# NBVAL_CHECK_OUTPUT
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from tqdm import tqdm

from lib import vae_experiment as experiment
from lib.data import load_mnist
from lib.evaluation import compared, converged, mean_ci, percent_ci, points_ci, short_ci
from lib.plotting import band, image_grid, paper_line
from lib.reporting import ChapterResults, show_stronger_profiles
from lib.training import pick_device
from lib.vae_experiment import CLUSTER_CENTRES, LABELS_ALONE, ORACLE, PIXEL_KMEANS, RANDOM_IMAGES, arm_tag, beta_tags, control_tag, controlled, rounds_spent
from lib.verdicts import AtLeast, Above, Between, Scale

settings = experiment.Settings.of(globals())  # the parameters above, each checked by lib's Settings
torch_device = pick_device(device)
results = ChapterResults("04_vae_cluster_labelling", settings, experiment)
print(f"profile {profile} ({results.scale.label}), seeds {seeds}, device {torch_device}")

# %% [markdown]
# ## The data
#
# MNIST's 60,000 training images are cut, stratified by digit, into the annotator's images, the
# judge's images, the validation images and the VAE's training images. The VAE never sees a
# training label; they are used only to report how many propagated labels are right ("label purity").

# %% tags=["hide-input"]
mnist = load_mnist()
splits = experiment.make_splits(mnist, settings.data)
print(f"{mnist.name}: {mnist.provenance['format']}, lossy: {mnist.provenance['lossy']}")  # which copy this machine read
for path, digest in sorted(mnist.provenance["files"].items()):
    print(f"  {path.split('/')[-1]}: {digest[:23]}…")

# %% tags=["hide-input"]
# NBVAL_CHECK_OUTPUT
for name in ("annotator", "judge", "val", "train", "test"):
    split = getattr(splits, name)
    counts = torch.bincount(split.labels, minlength=10).tolist()
    print(f"{name:>9}: {len(split.labels):6d} images, per digit {counts}")

# %% tags=["hide-input"]
fig = image_grid(splits.train.images[:40], ncols=20, title="VAE training images (their labels are never used)", scale=0.6)
plt.show()

# %% [markdown]
# ## The simulated annotator and the judge

# %%
annotator, annotator_accuracy = experiment.train_reader(splits, settings, "annotator", mnist.fingerprint, device=torch_device, records=results.units)
judge, judge_accuracy = experiment.train_reader(splits, settings, "judge", mnist.fingerprint, device=torch_device, records=results.units)
print(f"annotator: accuracy {annotator_accuracy:.3f}, judge: accuracy {judge_accuracy:.3f}, on {len(splits.test.labels):,} MNIST test images")
if not smoke:  # code health (see the sanity checks at the end): both must read real digits reliably
    grid = "seeds 0-19 and two other choices of latent sizes, benchmarks/any_choice.py"
    results.check("the annotator's test accuracy", [annotator_accuracy], above=0.52, reference=0.1,
                  measured=f"{grid}: worst 0.949, chance + 0.849; bound halfway")
    results.check("the judge's test accuracy", [judge_accuracy], above=0.52, reference=0.1,
                  measured=f"{grid}: worst 0.946, chance + 0.846; bound halfway")

# %% [markdown]
# ## The method
#
# One training run is {py:func}`lib.cluster_labelling.train_labelling_vae`: Eq. (1) alone for the
# first epoch, then after every epoch {py:func}`lib.cluster_labelling.label_clusters` (k-means,
# decoded centres to the annotator, second-level split, Eq. (2) propagation) and Eq. (3) for the
# next epoch. Every training is a unit ({py:mod}`lib.units`): it checkpoints as it goes, so
# re-running the chapter after an interruption resumes, and its finished record is reused.
#
# **Which number of clusters?** The paper chooses k "by elbow method" and reports 10–16 labels an
# epoch; it gives no range for the elbow's search. On a smooth inertia curve the elbow lands near
# the middle of whatever range it is given (about √(k_min·k_max)), so our range, `k_min`–`k_max`,
# and not the data, would set the labels spent. We therefore train, for every seed, the **elbow
# arm** (k by the elbow over `k_min`–`k_max`) beside **fixed-k arms** (`budget_ks`, the paper's label
# counts: every round's first level has k clusters, and the paper's second level splits the
# clusters whose centre falls below the confidence threshold, adding labels). The arm judged against
# the paper (`paper_k`) is named in the parameters cell and fixed before the run; every arm is
# reported. Beside them: **γ = 0** (the plain VAE, the paper's experiment 1) for every `z_dim` of
# Fig. 5, and the controls described below.

# %%
def run(tag: str, seed: int, keep_centres=(), **changes):
    """One training of the VAE (a unit); ``changes`` override the method's settings."""
    return experiment.train_vae(splits, settings, annotator, judge, tag, seed, replace(settings.method, **changes), mnist.fingerprint,
                                device=torch_device, records=results.units, keep_centres=keep_centres)


def arm_name(k: int) -> str:
    return f"k = {k} fixed" if k else f"k by the elbow ({k_min}–{k_max})"


trained_before = results.units.wall_time_s  # the units' own training time, also when read from their records
arms = {k: {s: run(arm_tag(k), s, keep_centres=(1, epochs), fixed_k=k) for s in seeds}
        for k in tqdm([0, *budget_ks], desc="γ = 150, labels from centres, per arm")}
plain = {(z, s): run(f"plain-z{z}", s, z_dim=z, gamma=0.0) for z in tqdm(z_dims, desc="γ = 0 per z_dim") for s in seeds}
if z_dim not in z_dims:
    plain.update({(z_dim, s): run(f"plain-z{z_dim}", s, gamma=0.0) for s in seeds})
semi, paper = arms[0], arms[paper_k]  # the elbow arm, and the arm judged against the paper
print(f"{sum(map(len, arms.values())) + len(plain)} VAEs, {results.units.wall_time_s - trained_before:.0f} s of training in all; "
      f"judged against the paper: {arm_name(paper_k)}")

# %% [markdown]
# ## Decoded cluster centres after the first and the last epoch (the paper's Figs. 2 and 3)
#
# The judged arm's centres. Each title is the annotator's label and confidence; `L2` marks a
# second-level centre, `✗` a centre below the confidence threshold `valid_confidence` (its cluster is
# split again or left unlabelled). The threshold is the annotator's confidence, not a measure of how
# readable a centre is: a blurred centre can pass it with the wrong digit. With β = 5 the VAE can
# stay close to posterior collapse after one epoch, every centre then a similar blurred mean digit,
# until its KL term grows.

# %% tags=["hide-input"]
def show_centres(epoch: int, seed: int):
    c = paper[seed]["centres"][epoch]
    titles = [
        f"{'L2 ' if lvl == 2 else ''}{lab} {conf:.2f}{'' if conf >= valid_confidence else ' ✗'}"
        for lab, conf, lvl in zip(c["centre_labels"].tolist(), c["centre_confidence"].tolist(), c["centre_level"].tolist())
    ]
    fig = image_grid(c["centre_images"], titles, ncols=10, title=f"decoded centres after epoch {epoch} (seed {seed}, k = {c['k']})")
    results.figure(fig, f"fig{2 if epoch == 1 else 3}_centres_epoch{epoch}")
    plt.show()


show_centres(1, seeds[0])
show_centres(epochs, seeds[0])
kl1 = mean_ci([paper[s]["history"][0]["kl"] for s in seeds])
valid1 = mean_ci([float(paper[s]["centres"][1]["centre_confidence"].ge(valid_confidence).float().mean()) for s in seeds])
display(Markdown(f"In this run the KL term after the first epoch is {kl1.mean:.2f} nats (mean over seeds), and "
                 f"{100 * valid1.mean:.0f}% of the first round's centres reach the annotator's confidence threshold of "
                 f"{valid_confidence:g}; the first epoch has {-(-n_train // batch_size):,} steps of {batch_size} images "
                 "(the paper gives no batch size)."))

# %% [markdown]
# ## Labels an epoch, and how good the propagated labels are
#
# The paper's "10–16 labels an epoch" is a setting, not a result: it follows from k (and the
# second level). The first table shows what each arm spent; the second follows the judged arm round
# by round, with the **annotator's agreement** (the share of centres whose label is their cluster's
# majority true digit, which an oracle would always give) and the number of distinct digits among
# the labels above the threshold.

# %% tags=["hide-input"]
def rounds(arm: dict) -> list[dict]:
    return [{"seed": s, **{k: r.get(k) for k in ("epoch", "k", "second_level", "labels_given", "labelled_fraction", "label_purity",
                                                  "used_for_training", "annotator_agreement", "digits_labelled")}}
            for s in seeds for r in arm[s]["history"] if "labels_given" in r]


def per_epoch(rows: list[dict], key: str) -> dict[int, list[float]]:
    """``key`` of each labelling round, by epoch, one value a seed (rounds where it is undefined left out)."""
    return {e: [r[key] for r in rows if r["epoch"] == e and r[key] is not None] for e in sorted({r["epoch"] for r in rows})}


rows = rounds(paper)
results.table("labelling_rounds", rows)
label_epochs = sorted({r["epoch"] for r in rows})
labels_table = []
for k, arm in arms.items():
    given = per_epoch(rounds(arm), "labels_given")
    labels_table.append({"arm": arm_name(k), **{f"epoch {e}": given[e] for e in label_epochs},
                         "spent": [arm[s]["labels_spent"] for s in seeds]})
results.table("labels_an_epoch", labels_table)
display(Markdown("\n".join(
    ["| arm | " + " | ".join(f"after epoch {e}" for e in label_epochs) + " | spent on training (all rounds but the last) |",
     "|---|" + "---|" * (len(label_epochs) + 1)]
    + [f"| {t['arm']} | " + " | ".join(f"{np.mean(t[f'epoch {e}']):.1f} ({min(t[f'epoch {e}'])}–{max(t[f'epoch {e}'])})" for e in label_epochs)
       + f" | {np.mean(t['spent']):.0f} |" for t in labels_table]
)) if label_epochs else Markdown("No labelling round in this run."))
labels_per_round = [np.mean([r["labels_given"] for r in rows if r["seed"] == s]) for s in seeds]
labels_spent = [paper[s]["labels_spent"] for s in seeds]
purity = [float(np.mean(p)) for s in seeds if (p := [r["label_purity"] for r in rows if r["seed"] == s and r["label_purity"] is not None])]
elbow_purity = [float(np.mean(p)) for s in seeds
                if (p := [r["label_purity"] for r in rounds(semi) if r["seed"] == s and r["label_purity"] is not None])]
agreement, purity_by_epoch, digits = (per_epoch(rows, key) for key in ("annotator_agreement", "label_purity", "digits_labelled"))
display(Markdown("\n".join(
    [f"The judged arm ({arm_name(paper_k)}), per labelling round, mean over seeds (min–max):", "",
     "| after epoch | annotator's label = the cluster's majority digit | label purity | distinct digits labelled |", "|---|---|---|---|"]
    + [f"| {e} | {np.mean(agreement[e]):.0%} ({min(agreement[e]):.0%}–{max(agreement[e]):.0%}) | "
       + (f"{np.mean(purity_by_epoch[e]):.0%} ({min(purity_by_epoch[e]):.0%}–{max(purity_by_epoch[e]):.0%})" if purity_by_epoch[e] else "—")
       + f" | {np.mean(digits[e]):.1f} ({min(digits[e])}–{max(digits[e])}) |" for e in label_epochs if agreement[e]]
)))
display(Markdown(
    f"The annotator was shown {short_ci(labels_per_round, 1)} centres a round in the judged arm, "
    f"{short_ci(labels_spent, 0)} in all for the rounds that train the next epoch. Their labels reach every "
    + (f"image of a cluster above the threshold, and {percent_ci(purity)} of the propagated labels are right (label purity), "
       "which bounds what the softmax head can learn from them." if purity else "image of a cluster above the threshold; no centre reached it in this run.")
))

# %% [markdown]
# ## Test accuracy per epoch (the paper's Fig. 4)

# %% tags=["hide-input"]
epoch_axis = list(range(1, epochs + 1))


def curves(arm: dict, key: str = "test_accuracy") -> list[list[float]]:
    return [[r[key] for r in arm[s]["history"]] for s in seeds]


fig, ax = plt.subplots(figsize=(6, 3.5))
for k, arm in arms.items():
    band(ax, epoch_axis, curves(arm), f"γ = {gamma:g}, {arm_name(k)}")
paper_line(ax, 0.75, "paper: 75% after 5 epochs")
ax.set(xlabel="epoch", ylabel="test accuracy", ylim=(0, 1), title=f"classification accuracy on MNIST test images, z_dim = {z_dim}")
ax.legend(fontsize=8)
results.figure(fig, "fig4_test_accuracy")
plt.show()
test_curves = curves(paper)
final_accuracy = [c[-1] for c in test_curves]
elbow_accuracy = [c[-1] for c in curves(semi)]
settled = sum(converged(c) for c in test_curves)
results.converged(settled == len(seeds), "the test accuracy moves by less than 0.5 points over the last 3 epochs, every seed")
display(Markdown(f"Test accuracy after {epochs} epochs, judged arm ({arm_name(paper_k)}): **{percent_ci(final_accuracy)}** on "
                 f"{len(splits.test.labels):,} test images (the paper: 75%). By the book's criterion (less than half a point of "
                 f"movement over the last three epochs) the curve has settled for {settled} of {len(seeds)} seeds. The paper states "
                 f"its 75% after five epochs, settled or not."))

# %% [markdown]
# ## Reconstruction accuracy against `z_dim` (Fig. 5) and with vs without the classification loss (Fig. 6)
#
# Both judged by the judge on the validation images; how many images, and so how fine a difference
# they resolve, is printed under the figure. Fig. 6 adds the random-image control of the judged arm
# (as many labels an epoch, on random training images): it has the classification term too, so a
# gain that it shares is the term's, not the centres'.

# %% tags=["hide-input"]
controls = {k: {s: run(control_tag(k), s, label_source="random", random_labels=rounds_spent(arms[k][s])) for s in seeds}
            for k in tqdm(controlled(settings), desc="random images, as many an epoch")}
fig, (ax5, ax6) = plt.subplots(1, 2, figsize=(11, 3.8))
recon_by_z = [[plain[(z, s)]["history"][-1]["reconstruction_accuracy"] for z in z_dims] for s in seeds]
band(ax5, z_dims, recon_by_z, "γ = 0")
ax5.set(xlabel="z_dim", ylabel="reconstruction accuracy", ylim=(0, 1), xscale="log", title=f"Fig. 5: after {epochs} epochs, γ = 0")
ax5.set_xticks(z_dims, [str(z) for z in z_dims])
ax5.legend()
recon_semi = curves(paper, "reconstruction_accuracy")
recon_plain = [[r["reconstruction_accuracy"] for r in plain[(z_dim, s)]["history"]] for s in seeds]
recon_random = curves(controls[paper_k], "reconstruction_accuracy")
band(ax6, epoch_axis, recon_semi, f"with classification loss (γ = {gamma:g}), {arm_name(paper_k)}")
band(ax6, epoch_axis, recon_random, "random images, as many an epoch (γ = 150)")
band(ax6, epoch_axis, recon_plain, "without (γ = 0)")
ax6.set(xlabel="epoch", ylabel="reconstruction accuracy", ylim=(0, 1), title=f"Fig. 6: z_dim = {z_dim}")
ax6.legend(fontsize=8)
results.figure(fig, "fig5_fig6_reconstruction_accuracy")
plt.show()
recon_gain = [a[-1] - b[-1] for a, b in zip(recon_semi, recon_plain)]
recon_gain_random = [a[-1] - b[-1] for a, b in zip(recon_semi, recon_random)]
resolution = 1.96 * np.sqrt(2 * 0.25 / n_val)  # the widest 95% half-width of a difference of two accuracies on n_val images
display(Markdown(
    f"Reconstruction accuracy after {epochs} epochs, on {n_val:,} validation images (a difference of two accuracies on them "
    f"is resolved to within about ±{100 * resolution:.1f} points): with the classification loss {percent_ci([r[-1] for r in recon_semi])}, "
    f"its random-image control {percent_ci([r[-1] for r in recon_random])}, without {percent_ci([r[-1] for r in recon_plain])}. "
    f"The centres' gain over γ = 0 is {points_ci(recon_gain)} (the paper: +6 to +10), {compared(recon_gain)} zero across seeds; "
    f"over the random-image control, {points_ci(recon_gain_random)}, {compared(recon_gain_random)} zero."
))

# %% [markdown]
# **How much of the latent is in use.** β = 5 weighs the KL term five times; the KL (in nats, the
# whole latent) after the last epoch tells how much information the encoder passes to the decoder.
# A VAE near posterior collapse reconstructs poorly whatever its `z_dim`, and any extra gradient into
# its encoder (such as a classification term) can raise its reconstruction accuracy by opening the
# latent. With `beta_control` > 0, the judged arm and the plain VAE are trained again at that β.

# %% tags=["hide-input"]
kl_rows = [{"beta": beta, "gamma": 0.0, "z_dim": z, "kl": [plain[(z, s)]["history"][-1]["kl"] for s in seeds],
            "reconstruction_accuracy": [plain[(z, s)]["history"][-1]["reconstruction_accuracy"] for s in seeds]} for z in sorted({*z_dims, z_dim})]
kl_rows.append({"beta": beta, "gamma": gamma, "z_dim": z_dim, "kl": [paper[s]["history"][-1]["kl"] for s in seeds],
                "reconstruction_accuracy": [r[-1] for r in recon_semi]})
beta_gain = None
if beta_control:
    beta_semi_tag, beta_plain_tag = beta_tags(settings)
    beta_semi = {s: run(beta_semi_tag, s, fixed_k=paper_k, beta=beta_control) for s in tqdm(seeds, desc=f"β = {beta_control:g}, γ = {gamma:g}")}
    beta_plain = {s: run(beta_plain_tag, s, beta=beta_control, gamma=0.0) for s in tqdm(seeds, desc=f"β = {beta_control:g}, γ = 0")}
    for g, arm in ((0.0, beta_plain), (gamma, beta_semi)):
        kl_rows.append({"beta": beta_control, "gamma": g, "z_dim": z_dim, "kl": [arm[s]["history"][-1]["kl"] for s in seeds],
                        "reconstruction_accuracy": [arm[s]["history"][-1]["reconstruction_accuracy"] for s in seeds]})
    beta_gain = [beta_semi[s]["history"][-1]["reconstruction_accuracy"] - beta_plain[s]["history"][-1]["reconstruction_accuracy"] for s in seeds]
    beta_accuracy = [beta_semi[s]["history"][-1]["test_accuracy"] for s in seeds]
results.table("kl_per_z_dim", kl_rows)
display(Markdown("\n".join(
    ["| β | γ | z_dim | KL after the last epoch (nats, mean over seeds) | KL a latent dimension | reconstruction accuracy |", "|---|---|---|---|---|---|"]
    + [f"| {r['beta']:g} | {r['gamma']:g} | {r['z_dim']} | {np.mean(r['kl']):.2f} (max {max(r['kl']):.2f}) | {np.mean(r['kl']) / r['z_dim']:.2f} | "
       f"{percent_ci(r['reconstruction_accuracy'])} |" for r in kl_rows]
)))
if beta_gain is not None:
    display(Markdown(f"At β = {beta_control:g} the classification loss changes reconstruction accuracy by {points_ci(beta_gain)} "
                     f"({compared(beta_gain)} zero across seeds; at β = {beta:g}: {points_ci(recon_gain)}), and the judged arm's test "
                     f"accuracy is {percent_ci(beta_accuracy)} (at β = {beta:g}: {percent_ci(final_accuracy)})."))

# %% [markdown]
# ## Beyond the paper: controls
#
# 1. **Random images, as many labels an epoch, as much supervision.** For every arm with a
#    control, after each labelling epoch the annotator labels as many *new randomly chosen training
#    images* as that arm's centres spent in the same round, and keeps those labelled before. Eq. (3)
#    as printed would average those few labels over whole batches of mostly unlabelled images, a tiny
#    fraction of the supervision the method's propagated labels get; so every step adds a batch of the
#    labelled images, each weighted by the annotator's confidence, as the method's images are weighted by theirs.
# 2. **An oracle annotator** (`oracle`): the judged arm again, each centre labelled with the majority
#    true digit of its cluster, confidence 1 (so no centre is split again). The gap between it and the
#    judged arm is what the annotator's misreadings of blurred centres cost; the oracle still pays for
#    clusters that mix digits and for digits that no cluster's majority covers.
# 3. **A classifier on the labelled images alone**: as many random images as the judged arm spent, a
#    network with the method's classification path (encoder to `z`, softmax head) trained on them
#    only, for as many steps as the method trains with labels.
# 4. **No VAE at all.** k-means on raw pixels, the same elbow, second level and annotator; a test
#    image takes the label of its nearest valid centre.

# %%
oracle_arm = {s: run("oracle", s, fixed_k=paper_k, oracle=True) for s in tqdm(seeds, desc="oracle annotator")} if oracle else {}
alone = {s: experiment.labels_alone(splits, settings, annotator, paper[s]["labels_spent"], mnist.fingerprint, seed=s, device=torch_device,
                                    records=results.units) for s in tqdm(seeds, desc="labels alone")}
pixel = {s: experiment.pixel_kmeans_baseline(splits, annotator, settings.method, seed=s) for s in tqdm(seeds, desc="k-means on pixels")}


def final(arm: dict, key: str = "test_accuracy") -> list[float]:
    return [arm[s]["history"][-1][key] for s in seeds]


arm_rows = []
for k, arm in arms.items():
    arm_rows.append({"arm": f"{CLUSTER_CENTRES}, {arm_name(k)}", "k": k, "test_accuracy": final(arm), "labels": [arm[s]["labels_spent"] for s in seeds],
                     "reconstruction_accuracy": final(arm, "reconstruction_accuracy"), "judged": k == paper_k})
    if k in controls:
        arm_rows.append({"arm": f"{RANDOM_IMAGES}, as {arm_name(k)}", "k": k, "test_accuracy": final(controls[k]),
                         "labels": [controls[k][s]["labels_spent"] for s in seeds],
                         "reconstruction_accuracy": final(controls[k], "reconstruction_accuracy"), "judged": False})
if oracle_arm:
    arm_rows.append({"arm": f"{ORACLE}, {arm_name(paper_k)}", "k": paper_k, "test_accuracy": final(oracle_arm),
                     "labels": [oracle_arm[s]["labels_spent"] for s in seeds],
                     "reconstruction_accuracy": final(oracle_arm, "reconstruction_accuracy"), "judged": False})
arm_rows += [{"arm": LABELS_ALONE, "k": paper_k, "test_accuracy": [alone[s]["test_accuracy"] for s in seeds],
              "labels": [alone[s]["labels_given"] for s in seeds], "reconstruction_accuracy": None, "judged": False},
             {"arm": PIXEL_KMEANS, "k": 0, "test_accuracy": [pixel[s]["test_accuracy"] for s in seeds],
              "labels": [pixel[s]["labels_given"] for s in seeds], "reconstruction_accuracy": None, "judged": False}]
results.table("arms", arm_rows)
display(Markdown("\n".join(
    ["| arm | labels spent (mean) | test accuracy (mean ± 95% CI) | minus the judged arm, per seed (points) | reconstruction accuracy |",
     "|---|---|---|---|---|"]
    + [f"| {'**' + r['arm'] + '** (judged)' if r['judged'] else r['arm']} | {np.mean(r['labels']):.0f} | {percent_ci(r['test_accuracy'])} | "
       f"{'' if r['judged'] else points_ci([x - y for x, y in zip(r['test_accuracy'], final_accuracy)])} | "
       f"{'—' if r['reconstruction_accuracy'] is None else percent_ci(r['reconstruction_accuracy'])} |" for r in arm_rows]
)))
findings = [f"- {arm_name(k)}: the centres' test accuracy is {compared(d)} their random-image control's ({points_ci(d)})."
            for k in controls if (d := [x - y for x, y in zip(final(arms[k]), final(controls[k]))])]
if oracle_arm:
    d = [x - y for x, y in zip(final(oracle_arm), final_accuracy)]
    findings.append(f"- the oracle annotator against the simulated one ({arm_name(paper_k)}): {points_ci(d)}, {compared(d)} zero.")
display(Markdown("Cluster centres against each control, per seed, in this run:\n\n" + "\n".join(findings)))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 4))
points = {"cluster centres": [(arm[s]["labels_spent"], arm[s]["history"][-1]["test_accuracy"]) for arm in arms.values() for s in seeds],
          "random images, as many an epoch": [(c[s]["labels_spent"], c[s]["history"][-1]["test_accuracy"]) for c in controls.values() for s in seeds]}
if oracle_arm:
    points["cluster centres, oracle annotator"] = [(oracle_arm[s]["labels_spent"], oracle_arm[s]["history"][-1]["test_accuracy"]) for s in seeds]
for (name, pts), marker in zip(points.items(), ("o", "s", "^")):
    x, y = zip(*pts)
    ax.scatter(x, y, marker=marker, label=name, alpha=0.8)
paper_line(ax, 0.75, "paper: 75%")
ax.set(xscale="log", xlabel="labels spent on training (one point per run)", ylabel="test accuracy", ylim=(0, 1),
       title="accuracy against labels spent, every arm")
ax.legend(fontsize=8)
results.figure(fig, "labels_spent")
plt.show()
results.table("labels_spent", [{"method": n, "labels": x, "test_accuracy": y} for n, pts in points.items() for x, y in pts])

# %% [markdown]
# ## The paper's claims, judged
#
# **Which arm is judged.** The paper says both that k was chosen "by elbow method" and that "only
# 10–16 images (corresponding to each cluster center)" were labelled after each epoch. Our elbow
# over `k_min`–`k_max` is a range of our choosing, and it spends fewer labels; the paper's counts are
# what its text pins down. With the paper's second level, a round spends k labels plus a few for
# the clusters split again, so the fixed k whose rounds fall in 10–16 is the lowest, **k = 10** (it
# is also the least a labelling of ten digits can use); k = 16 spends 16 and more. The full profile
# therefore judges `c4-accuracy` on the k = 10 arm (`paper_k`), chosen before its run; the elbow arm
# and k = 16 are reported beside it. The quick profile runs only the elbow arm and judges it.
#
# **The rules**, each from the paper's wording: 75% accuracy (within 2 points); a reconstruction
# gain from the classification loss, "improved significantly", so above zero, both over γ = 0 (the
# paper's comparison) and over the random-image control (which has the classification term too); its
# size, "by 6 to 10 %"; and Fig. 5's "increasing z_dim beyond 10 does not result in an increase in
# accuracy in the same proportion", diminishing returns: per seed, the gain per doubling of `z_dim`
# below 10 minus the gain per doubling above it, above zero. A rule's "CI" is our 95% interval over seeds.
#
# Absolute numbers need the paper's scale: its 5 epochs over about 50,000 images. Whether the
# classification loss helps at all, and the shape of Fig. 5, are comparisons between models trained
# alike and need converged runs of the paper's setting; the quick profile's few hundred steps test
# none of them.

# %%
CHANGES = {
    "c4-accuracy": "judged on the arm `paper_k` names, at the paper's scale the one whose label counts match the paper's 10–16 an epoch "
                   "(k = 10 fixed, with the second level), not on the elbow over our own k range, which chose k = 7–10",
    "c4-labels": "a setting, not a result: the labels an epoch follow from k, so they are shown in a table and no longer judged",
    "c4-recon-gain": "on the judged arm (k = 10 fixed at the paper's scale) against γ = 0; a second row judges it against the random-image control",
    "c4-recon-gain-random": "new: the random-image control has the classification term too and gained as much; the gain is judged against it as well",
    "c4-recon-gain-size": "on the judged arm (k = 10 fixed at the paper's scale) against γ = 0",
    "c4-zdim-flat": "dropped: the paper says 'not in the same proportion' (diminishing returns), not 'flat'; replaced by c4-zdim-diminishing",
    "c4-zdim-diminishing": "new: per seed, the reconstruction gain per doubling of z_dim below 10 minus that above 10, above zero",
}

# %% tags=["hide-input"]
results.claim("c4-accuracy", "75% test accuracy after 5 epochs, with 10–16 labels an epoch", 0.75, final_accuracy, AtLeast(0.75, tolerance=0.02),
              needs=Scale.PAPER)
results.claim("c4-recon-gain", "the classification loss raises reconstruction accuracy (against γ = 0)", "+0.06 to +0.10", recon_gain,
              Above(0.0), needs=Scale.CONVERGED, unit="points")
results.claim("c4-recon-gain-random", "… and more than labelling as many random images an epoch does", "not tested", recon_gain_random,
              Above(0.0), needs=Scale.CONVERGED, unit="points")
results.claim("c4-recon-gain-size", "… by 6 to 10 points (against γ = 0)", "+0.06 to +0.10", recon_gain, Between(0.06, 0.10), needs=Scale.PAPER,
              unit="points")
smaller, larger = [z for z in z_dims if z < z_dim], [z for z in z_dims if z > z_dim]
rise_claim, diminishing_claim = f"reconstruction accuracy rises with z_dim up to {z_dim}", f"… and less per doubling beyond {z_dim}"
if z_dim in z_dims and smaller:
    rise = [r[z_dims.index(z_dim)] - r[z_dims.index(min(z_dims))] for r in recon_by_z]
    results.claim("c4-zdim-rise", rise_claim + f" (z_dim {min(z_dims)} → {z_dim})", "rises", rise, Above(0.0), needs=Scale.CONVERGED, unit="points")
else:
    results.not_run("c4-zdim-rise", rise_claim, "rises", f"this profile's z_dims {z_dims} have no value below {z_dim}", needs=Scale.CONVERGED)
if z_dim in z_dims and smaller and larger:
    slope_gap = [experiment.diminishing_returns(dict(zip(z_dims, r)), min(z_dims), z_dim, max(z_dims)) for r in recon_by_z]
    results.claim("c4-zdim-diminishing", diminishing_claim + f" (per doubling, z_dim {min(z_dims)} → {z_dim} minus {z_dim} → {max(z_dims)})",
                  "not in the same proportion", slope_gap, Above(0.0), needs=Scale.CONVERGED, unit="points")
else:
    results.not_run("c4-zdim-diminishing", diminishing_claim, "not in the same proportion",
                    f"this profile's z_dims {z_dims} need values below and above {z_dim}", needs=Scale.CONVERGED)
results.show_claims()

# %% [markdown]
# ### At the paper's scale
#
# The quick profile above trains on `n_train` of the paper's 59,872 images (6,000 by default). The full profile
# (`chapters/profiles/04_vae_cluster_labelling.full.yaml`) is the paper's scale and fits a CPU; its
# results are committed under `results/full/` and shown here as saved, with their run card. Its
# own executed notebook, with every table and figure of this page from that run, is
# `results/full/04_vae_cluster_labelling/04_vae_cluster_labelling.ipynb`.

# %% tags=["hide-input"]
figures = ["fig2_centres_epoch1", "fig3_centres_epoch5", "fig4_test_accuracy", "fig5_fig6_reconstruction_accuracy", "labels_spent"]
stronger = show_stronger_profiles(results_root, results.chapter, profile, figures)  # read from the committed results as this runs
results.show_changed_readings(results_root, CHANGES, stronger)

# %% [markdown]
# ### Sanity checks
# Code health, not results: each check says that the code ran as intended (the annotator and the
# judge read digits, the labelled VAE and its propagated labels beat chance, the decoder
# reconstructs), with a bound that holds for any seed and any valid choice of latent sizes. Each bound
# sits halfway between chance (a tenth for a digit) and the worst value measured over seeds 0–19 and
# the other choices of `benchmarks/any_choice.py` (a safety factor of 2). A failed check still saves
# this run's results, then stops the run.

# %% tags=["hide-input"]
if not smoke:  # a smoke run's tiny settings cannot reach these
    chance = 0.1
    results.check("test accuracy of the labelled VAE (the elbow arm)", elbow_accuracy, above=0.162, reference=chance,
                  measured=f"{grid}: worst 0.225, chance + 0.125 (seeds 0-1); bound halfway")
    results.check("purity of the propagated labels (the elbow arm)", elbow_purity, above=0.133, reference=chance,
                  measured=f"{grid}: worst 0.167, chance + 0.067 (seeds 0-1); bound halfway")
    results.check("the plain VAE's reconstruction accuracy", [r[-1] for r in recon_plain], above=0.200, reference=chance,
                  measured=f"{grid}: worst 0.302, chance + 0.202 (seeds 10-11); bound halfway")
    # an identity, not a measurement: a round shows the k first-level centres (k_min <= k <= k_max, or the arm's fixed k), and more when it splits
    assert all((k_min <= r["k"] <= k_max if k == 0 else r["k"] == k) and r["labels_given"] >= r["k"] for k, arm in arms.items() for r in rounds(arm)), \
        "a labelling round outside its k range"
trainings = [*(a for arm in arms.values() for a in arm.values()), *plain.values(), *(a for c in controls.values() for a in c.values()),
             *oracle_arm.values(), *(list(beta_semi.values()) + list(beta_plain.values()) if beta_control else [])]
results.save(
    device=torch_device, data=[mnist.provenance], initialisation="random (PyTorch defaults), seeded per run",
    extra={"trainings": len(trainings), "annotator_test_accuracy": annotator_accuracy, "judge_test_accuracy": judge_accuracy},
)
results.show_saved()
results.stop_on_failed_checks()

# %% [markdown]
# ## Recap
#
# What this run found (every number from the run above; the scorecard says which claims its
# scale can test):

# %% tags=["hide-input"]
verdicts = {c["id"]: c["verdict"] for c in results.claims}
random_final = final(controls[paper_k])
alone_final, pixel_final = [alone[s]["test_accuracy"] for s in seeds], [pixel[s]["test_accuracy"] for s in seeds]


def against(other: list[float], whose: str) -> str:
    d = [x - y for x, y in zip(final_accuracy, other)]
    return f"{compared(d)} {whose} ({points_ci(d)})"


display(Markdown("\n".join([
    f"- **The method runs as described**: an unsupervised first epoch, then each epoch k-means on the latents, an annotator "
    f"shown only decoded centres, a second level for centres below the confidence threshold, Eq. (2) propagation and Eq. (3) "
    f"training. The judged arm ({arm_name(paper_k)}) reached {percent_ci(final_accuracy)} test accuracy after {epochs} epochs "
    f"(the paper: 75%; verdict: {verdicts['c4-accuracy']}); the elbow arm {percent_ci(elbow_accuracy)}.",
    f"- **Labels an epoch** (a setting, not judged): {short_ci(labels_per_round, 1)} a round in the judged arm, "
    + (f"with {percent_ci(purity)} of the propagated labels right." if purity else "no centre above the threshold."),
    f"- **Reconstruction accuracy**: the classification loss changes it by {points_ci(recon_gain)} against γ = 0 "
    f"(verdict: {verdicts['c4-recon-gain']}) and by {points_ci(recon_gain_random)} against random images labelled as many an epoch "
    f"(verdict: {verdicts['c4-recon-gain-random']}).",
    f"- **Against random images, as many labels an epoch and as much supervision**, the judged arm's accuracy is {against(random_final, 'theirs')}; "
    f"against a classifier on as many labels alone, {against(alone_final, 'its')}; against k-means on raw pixels, {against(pixel_final, 'its')}.",
    *([f"- **An oracle annotator** (each centre labelled with its cluster's majority digit) reaches {percent_ci(final(oracle_arm))}, "
       f"the judged arm {against(final(oracle_arm), 'its')}."] if oracle_arm else []),
])))

# %% tags=["hide-input"]
results.show_summary(
    stronger,
    method=f"The paper's VAE with a softmax head on z, trained {epochs} epochs on MNIST; after every epoch k-means on the training latents, "
           "the decoded centres labelled by a simulated annotator (a CNN trained on images the VAE never sees), a second level for "
           "centres below its confidence threshold, Eq. (2) propagation and Eq. (3). k by the elbow over a range of ours, and fixed "
           "to the paper's label counts; each arm beside a control that labels as many random images an epoch, an oracle annotator, "
           "the plain VAE per z_dim, and the same pair at a smaller β.",
    easy="The method is short and fully specified in its equations: the VAE, the loss of Eqs. (1)-(3), the propagation of Eq. (2) "
         "and the training schedule (one unsupervised epoch, then labels after every epoch) could be written from the text alone, "
         "and the model is a small MLP that trains on a CPU.",
    difficult="The paper does not give the elbow's range of k, the batch size, the learning rate, the first layers' widths or "
              "a of Eq. (2), and its annotator is a person looking at decoded centres. The number of clusters sets how many "
              "digits the labels can cover, so the range of k given to the elbow decides much of the accuracy; we fixed k to the "
              "paper's label counts to judge it. Reconstruction accuracy needs a reader of digits, which we had to build (the judge).",
    left_open="How the elbow was computed and over which k; whether the 10-16 labels include the second level; the batch size and "
              "learning rate; how many validation images Fig. 6's 6-10 point gain rests on (128, a resolution of about ±12 points "
              "for a difference); and whether any control (random images, the same labels without the VAE) was compared.",
)

# %% [markdown]
# **Deviations from the paper**
#
# - The annotator is a CNN, not a person, and a second CNN judges the reconstructions (see the
#   note at the top); the VAE therefore trains on `n_train` images rather than 59,872, since parts
#   of MNIST's training set teach the annotator and the judge.
# - Reconstruction accuracy is measured on `n_val` validation images instead of 128, so that a
#   difference of a few points is not lost in the noise of so small a set.
# - The widths of the first two layers, the learning rate, the batch size and `a` of Eq. (2) are
#   not given in the paper; the parameters cell states our choices.
# - k by the elbow method: the "kneedle" rule on k-means inertia for k in [`k_min`, `k_max`], a range
#   the paper does not give; beside it, k fixed to the paper's label counts (`budget_ks`), and the
#   claims judged on the fixed-k arm `paper_k`.
# - The controls (random images labelled as many an epoch, the oracle annotator, β = `beta_control`)
#   are ours; the paper compares only γ = 150 with γ = 0.
# - The quick profile trains on far fewer images than the paper; the full profile
#   (`python -m lib.run chapters/04_vae_cluster_labelling.py --profile full`) uses the paper's scale.
#
# **Exercises**
#
# Each solution's command files its results under `../exercises/` (`-p results_root ../exercises`),
# beside the book's own `results/`, so the book's quick results and its scorecard stay those of the
# chapter as published.
#
# ````{exercise}
# :label: ch4-ex-annotator
#
# Make the annotator worse (fewer `n_annotator` images). How fast does the method degrade compared
# with the random-image baseline?
# ````
#
# ````{solution} ch4-ex-annotator
# :class: dropdown
#
# Run, for instance, `python -m lib.run chapters/04_vae_cluster_labelling.py -p n_annotator 300 -p smoke true -p results_root ../exercises`
# (`smoke` lifts the chapter's 90% floor on the annotator's accuracy; `annotator_epochs` would weaken
# the judge of reconstructions too) and compare the annotator's accuracy line and the baselines table with this page's. The method
# asks the annotator about *decoded cluster centres*: blurred, averaged digits that are harder to
# read than real images; the random-image baseline asks about real MNIST images. A weaker annotator
# therefore loses more on the centres: more of them fall below the validity threshold, so more
# clusters are split again (more labels spent) while fewer images receive a label, and more of the
# centres that pass are misread, a wrong centre label reaching its whole cluster. Expect the method's accuracy to fall faster than the baseline's as the
# annotator weakens.
# ````
#
# ````{exercise}
# :label: ch4-ex-threshold
#
# Set `valid_confidence = 0.9`. More second-level centres are labelled: does accuracy follow the
# labels spent?
# ````
#
# ````{solution} ch4-ex-threshold
# :class: dropdown
#
# Run `python -m lib.run chapters/04_vae_cluster_labelling.py -p valid_confidence 0.9 -p results_root ../exercises` and read the
# labelling-rounds table and the labels-spent figure. A higher threshold rejects more first-level
# centres, so more clusters are split again and their second-level centres are shown to the
# annotator: the labels spent per round rise. The labels that survive are more often right (label
# purity rises), but fewer images receive one; whether accuracy follows depends on which effect wins,
# and the labels-spent figure puts it beside the random-image baseline at the same number of labels,
# which is the comparison that decides whether the extra labels were worth asking for.
# ````
#
# ````{exercise}
# :label: ch4-ex-gamma
#
# The paper's γ = 150 weighs one image's cross-entropy like 150 nats of reconstruction. Sweep γ
# and watch the trade-off between Fig. 4 and Fig. 6.
# ````
#
# ````{solution} ch4-ex-gamma
# :class: dropdown
#
# Run the chapter with `-p gamma 30`, `-p gamma 150` and `-p gamma 600` (each a separate run with
# `-p results_root ../exercises-gamma-30` and so on; keep the seeds) and collect the final test
# accuracy (Fig. 4) and the reconstruction accuracy (Fig. 6). γ = 0 needs no run: it is the plain
# VAE the chapter already trains (Fig. 6's "without" curve), whose classifier head learns nothing. As
# γ grows, the encoder arranges the latent space for the classifier and the test accuracy should
# rise; the paper claims the classification term also raises reconstruction accuracy (Fig. 6), and
# the sweep shows whether that holds, or whether the reconstruction term's shrinking share of the
# loss costs readability beyond some γ. Plot one against the other: the paper's γ = 150 is one point
# on that curve.
# ````
