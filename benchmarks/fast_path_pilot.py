"""Paired pilots of the CPU fast path: each cpu profile's main model trained twice on the same seeds,
once in fp32 and once on the fast path the profile asks (bfloat16 autocast, in the profile's memory
layout), to the profile's epochs, with the chapter's own training functions.

The question is whether the fast path moves a result by more than a new seed does. For each chapter
and seed the table gives both final test accuracies, their difference, and whether each training met
the book's convergence criterion (its last three test accuracies within half a point); then the
mean difference with its 95% interval beside the seed-to-seed standard deviation of the fp32 runs.

The main models, with the cpu profile's settings (``chapters/profiles/*.cpu.yaml``):

* chapter 1: the straight 3-class network (pre-activation ResNet + FPN) on all of MNIST's
  starting classes (8 epochs), or with ``--dataset fashion-mnist`` Fashion-MNIST's (12), one-cycle
  NAdam. Its test accuracy is measured after every epoch.
* chapter 2: the cross-entropy model (the 4-layer CNN at the profile's width) on all of CIFAR-10,
  20 epochs, one-cycle Adam, crop and flip.
* chapter 3: both backbones' two-headed networks from scratch (the pretraining in front of the
  paper's variants trains the same networks with the same recipe), early stopping (ResNet) and a
  plateau's cut (ConvNeXt) on the validation loss, as the profile has them. Convergence is the
  chapter's own criterion: its ResNet stopped early, its ConvNeXt's rate was cut on a plateau.

Run (one chapter at a time; about 10-20 minutes each on a 2-core CPU), with the threads the profile's
header says it runs with, e.g. two single-thread workers on disjoint seeds:
``BOOK_THREADS=1 python benchmarks/fast_path_pilot.py --chapter 2 --seeds 0 2`` beside ``... --seeds 1 3``. The result is appended to
``benchmarks/results/fast_path_pilot.json`` and the table printed. Not a test: it trains.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from lib.evaluation import converged, mean_ci
from lib.provenance import cpu_description, native_bf16, numeric_path, pin_threads

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "chapters" / "profiles"
OUT = ROOT / "benchmarks" / "results" / "fast_path_pilot.json"
CPU = torch.device("cpu")


def profile(stem: str, fast: bool) -> dict:
    """The chapter's cpu profile; ``fast``: as it is (its fast path), else with bfloat16 off (fp32, the same layout)."""
    params = {k: v for k, v in yaml.safe_load((PROFILES / f"{stem}.cpu.yaml").read_text()).items() if k != "seeds"}
    if fast and not params.get("amp"):
        raise SystemExit(f"{stem}'s cpu profile does not ask the fast path (amp: true): nothing to compare")
    return params | {"amp": fast}


def chapter1(seed: int, fast: bool, dataset: str = "mnist") -> list[dict]:
    from lib import embedding_experiment as ex
    from lib.data import load_fashion_mnist, load_mnist
    from lib.evaluation import accuracy
    from lib.models import StraightClassifier
    from lib.training import fit_classifier, predict, seed_everything

    s = ex.Settings(**profile("01_embeddings_extendable_classification", fast), seeds=[seed])
    splits = ex.make_splits(load_mnist() if dataset == "mnist" else load_fashion_mnist(), s.task, seed)
    train, test = splits.old(splits.train), splits.old(splits.test)
    recipe = s.straight.recipe(dataset)
    seed_everything(seed)
    model = StraightClassifier(s.pyramid.config(splits.num_old))
    report = fit_classifier(model, train, recipe, seed=seed, device=CPU, desc=f"ch1 seed {seed} {'fast' if fast else 'fp32'}",
                            evaluate=lambda m: accuracy(predict(m, test.images, amp=recipe.amp, channels_last=recipe.channels_last), test.labels))
    return [{"model": f"straight 3-class network, {'MNIST' if dataset == 'mnist' else 'Fashion-MNIST'}", "accuracy": report.evaluations[-1], "curve": report.evaluations,
             "converged": converged(report.evaluations), "images_per_s": report.images_per_s, "seconds": report.seconds,
             "numerics": numeric_path(CPU, {"r": {"amp": recipe.amp, "channels_last": recipe.channels_last}})}]


def chapter2(seed: int, fast: bool) -> list[dict]:
    from lib import soc_experiment as ex
    from lib.data import load_cifar10

    s = ex.Settings(**profile("02_self_organizing_class_embeddings", fast), seeds=[seed])
    cifar = load_cifar10()
    if (s.n_train, s.n_test) != (50_000, 10_000):
        raise SystemExit("the pilot trains on all of CIFAR-10, as the cpu profile does; its profile now asks a subset")
    train, test = cifar.train, cifar.test
    _, report = ex.train_model(train, s.encoder_config, s.recipe, ex.CE, 10, seed=seed, device=CPU, checkpoint=None,
                               desc=f"ch2 seed {seed} {'fast' if fast else 'fp32'}", test=test)
    return [{"model": f"cross-entropy, width {s.width}, CIFAR-10", "accuracy": report.evaluations[-1], "curve": report.evaluations,
             "converged": converged(report.evaluations), "images_per_s": report.images_per_s, "seconds": report.seconds,
             "numerics": numeric_path(CPU, {"r": {"amp": s.recipe.amp, "channels_last": s.recipe.channels_last}})}]


def chapter3(seed: int, fast: bool) -> list[dict]:
    from lib import hierarchy_experiment as ex
    from lib.data import load_tiny_imagenet_animals

    s = ex.Settings(**profile("03_hierarchical_transfer_learning", fast), seeds=[seed])
    tiny = load_tiny_imagenet_animals()
    h = ex.build_hierarchy(tiny, s.data.unseen_subclasses, s.data.novel_subclass, s.data.hierarchy_seed)
    splits = ex.make_splits(tiny, h, s.data, seed)
    out = []
    for variant in (ex.RESNET_SCRATCH, ex.CONVNEXT_SCRATCH):
        model, fit = ex.train_variant(variant, splits, h, s, {}, seed=seed, device=CPU, checkpoint=None)
        test = ex.evaluate(model, splits, h, s.recipe(variant.family), s.keep_known)
        history, recipe = fit.history, s.recipe(variant.family)
        if recipe.stopping == "early":  # the chapter's criterion: no lower validation loss for `patience` epochs
            settled = len(history["validation loss"]) - fit.best_epoch >= recipe.patience
        else:  # ... or a cut of the rate on a plateau, the last epoch's included
            settled = min(history["learning rate after"]) < history["learning rate"][0]
        out.append({"model": f"{variant.name} ({s.networks.backbone(variant.family)}), two heads", "accuracy": test.sub["accuracy"],
                    "weighted F1": test.sub["F1 (weighted)"], "curve": history["validation sub-class accuracy"], "converged": settled,
                    "images_per_s": fit.images_per_s, "seconds": fit.seconds,
                    "numerics": numeric_path(CPU, {"r": {"amp": recipe.amp, "channels_last": recipe.channels_last}})})
    return out


CHAPTERS = {1: chapter1, 2: chapter2, 3: chapter3}


def table(rows: list[dict]) -> str:
    lines = ["| chapter | model | seed | fp32 accuracy | fast-path accuracy | difference (points) | converged (fp32 / fast) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    summary = []
    for (chapter, model) in dict.fromkeys((r["chapter"], r["model"]) for r in rows):
        pairs = {}
        for r in rows:
            if (r["chapter"], r["model"]) == (chapter, model):
                pairs.setdefault(r["seed"], {})[r["path"]] = r
        diffs, base = [], []
        for seed, p in sorted(pairs.items()):
            if {"fp32", "fast"} <= set(p):
                a, b = p["fp32"], p["fast"]
                diffs.append(100 * (b["accuracy"] - a["accuracy"]))
                base.append(100 * a["accuracy"])
                lines.append(f"| {chapter} | {model} | {seed} | {100 * a['accuracy']:.2f} | {100 * b['accuracy']:.2f} | {diffs[-1]:+.2f} | "
                             f"{'yes' if a['converged'] else 'no'} / {'yes' if b['converged'] else 'no'} | "
                             f"{b['images_per_s'] / a['images_per_s']:.2f}x |")
        if len(diffs) >= 2:
            ci = mean_ci(diffs)
            sd = float(torch.tensor(base).std())
            summary.append(f"- chapter {chapter}, {model}: fast − fp32 = {ci.mean:+.2f} points, 95% interval [{ci.low:+.2f}, {ci.high:+.2f}] "
                           f"over {len(diffs)} seeds; the fp32 runs' seed-to-seed standard deviation is {sd:.2f} points")
    return "\n".join(lines + [""] + summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapter", type=int, choices=sorted(CHAPTERS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="chapter 1's dataset")
    parser.add_argument("--show", action="store_true", help="print the table of the recorded pilots and train nothing")
    args = parser.parse_args()
    def recorded() -> list[dict]:
        return json.loads(OUT.read_text())["rows"] if OUT.is_file() else []

    if not args.show:
        threads = pin_threads("cpu")  # $BOOK_THREADS, as the profiles' workers run
        if not native_bf16(CPU):
            raise SystemExit(f"this CPU has no native bfloat16 ({cpu_description()}): the fast path would be fp32, nothing to compare")
        for seed in args.seeds:
            for path in ("fp32", "fast"):
                dataset = args.dataset if args.chapter == 1 else None
                if any((r["chapter"], r.get("dataset"), r["seed"], r["path"]) == (args.chapter, dataset, seed, path) for r in recorded()):
                    continue
                started = time.time()
                train = CHAPTERS[args.chapter]
                made = train(seed, path == "fast", dataset) if dataset else train(seed, path == "fast")
                rows = [{"chapter": args.chapter, "dataset": dataset, "seed": seed, "path": path, **row, "wall_s": time.time() - started,
                         "cpu": cpu_description(threads), "torch": torch.__version__} for row in made]
                OUT.parent.mkdir(parents=True, exist_ok=True)
                with open(Path(tempfile.gettempdir()) / "fast_path_pilot.lock", "w") as lock:  # workers on other seeds may write at once
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    OUT.write_text(json.dumps({"rows": recorded() + rows}, indent=1))  # after every training: an interrupted pilot resumes
    done = {"rows": recorded()}
    print(table(done["rows"]))


if __name__ == "__main__":
    main()
