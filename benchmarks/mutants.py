"""Do the unit tests catch plausible bugs? Each mutant below is one such bug, planted in a temporary
copy of the repository; the tests that cover its code then run there, and must fail.

Run: ``python benchmarks/mutants.py`` (a few minutes). It prints one line a mutant (caught or
missed, and by which test) and the tally, writes them to ``benchmarks/results/mutants.md``, and exits
with status 1 when any mutant is missed. Not a test itself: it runs the test suite once a mutant.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "mutants.md"


@dataclass(frozen=True)
class Mutant:
    what: str
    path: str  # the file it changes
    old: str  # text found exactly once there
    new: str
    tests: tuple[str, ...]  # the test files that cover it


MUTANTS = (
    Mutant("label smoothing applied to SOC's regulariser too", "lib/soc.py",
           "regulariser = F.cross_entropy(class_logits, torch.arange(len(class_logits), device=class_logits.device))",
           "regulariser = F.cross_entropy(class_logits, torch.arange(len(class_logits), device=class_logits.device), "
           "label_smoothing=label_smoothing)", ("tests/test_soc.py",)),
    Mutant("label smoothing ignored", "lib/soc.py", "F.cross_entropy(head(z), labels, label_smoothing=label_smoothing)",
           "F.cross_entropy(head(z), labels)", ("tests/test_soc.py",)),
    Mutant("a new SOC class mean left at its random start", "lib/soc.py", "        self.means.weight.data[-1] = 0\n", "",
           ("tests/test_soc.py",)),
    Mutant("the figure-only last labelling round counted in labels_spent", "lib/cluster_labelling.py",
           'spent = sum(r.get("labels_given", 0) for r in history if r.get("used_for_training"))',
           'spent = sum(r.get("labels_given", 0) for r in history)', ("tests/test_cluster_labelling_paths.py",)),
    Mutant("a centre exactly at the confidence threshold counted as invalid", "lib/cluster_labelling.py",
           "if conf_t[m] < config.valid_confidence or len(idx) == 0:", "if conf_t[m] <= config.valid_confidence or len(idx) == 0:",
           ("tests/test_cluster_labelling.py",)),
    Mutant("the second-level split starting at k = 3", "lib/cluster_labelling.py",
           "k2, _ = choose_k(z[idx], 2, config.k_second_max, seed, config.elbow_sample)",
           "k2, _ = choose_k(z[idx], 3, max(3, config.k_second_max), seed, config.elbow_sample)", ("tests/test_cluster_labelling.py",)),
    Mutant("second-level members weighted by their distance to a first-level centre", "lib/cluster_labelling.py",
           "d = (z_t[idx_t] - centres_t[m]).norm(dim=1)", "d = (z_t[idx_t] - centres_t[min(m, k - 1)]).norm(dim=1)",
           ("tests/test_cluster_labelling.py",)),
    Mutant("Eq. (3)'s classification term dropped", "lib/cluster_labelling.py",
           "loss = parts.total + config.gamma * ce if labelling is not None else parts.total  # Eq. (3)",
           "loss = parts.total  # Eq. (3)", ("tests/test_cluster_labelling_paths.py", "tests/test_cluster_labelling.py")),
    Mutant("the KL term of Eq. (1) halved", "lib/losses.py", "0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)",
           "0.25 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)", ("tests/test_losses.py",)),
    Mutant("class weights inverted", "lib/hierarchy.py", 'weights[present] = compute_class_weight("balanced", classes=present, y=labels.numpy())',
           'weights[present] = 1 / compute_class_weight("balanced", classes=present, y=labels.numpy())', ("tests/test_hierarchy.py",)),
    Mutant("an early stop keeps the last epoch, not the best", "lib/hierarchy_experiment.py",
           'model.load_state_dict(loop["best"])', "pass", ("tests/test_hierarchy.py", "tests/test_training.py")),
    Mutant("the epoch loop forgets to resume the loop's state", "lib/training.py",
           "state = resumed or {", "state = {", ("tests/test_training.py",)),
    Mutant("a verdict of reproduced when only the mean lies in the region", "lib/verdicts.py",
           "if self.holds(ours.low) and self.holds(ours.high):", "if self.holds(ours.mean):", ("tests/test_verdicts.py",)),
    Mutant("a normal quantile where the interval needs Student's t", "lib/evaluation.py",
           "stats.t.ppf(0.5 + level / 2, df=x.size - 1)", "stats.norm.ppf(0.5 + level / 2)",
           ("tests/test_reporting.py", "tests/test_verdicts.py")),
    Mutant("the triplet margin not divided by the cosine scale", "lib/losses.py",
           "TripletMarginLoss(margin=margin / scale,", "TripletMarginLoss(margin=margin,", ("tests/test_losses.py",)),
    Mutant("the two heads' level weights swapped", "lib/losses.py",
           "loss = level_weights[1] * level(sub_logits, y_sub, sub_weights)",
           "loss = level_weights[0] * level(sub_logits, y_sub, sub_weights)", ("tests/test_losses.py", "tests/test_hierarchy.py")),
    Mutant("a learned class scale's log-determinant dropped", "lib/soc.py",
           " - log_scales.sum(-1)[None] - 0.5", " - 0.5", ("tests/test_soc.py", "tests/test_soc_beyond.py")),
)


def run(mutant: Mutant) -> tuple[bool, str]:
    """Plant ``mutant`` in a copy and run its tests there: (caught, the first failing test or why not)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        copy = Path(tmp)
        for part in ("lib", "tests", "chapters", "benchmarks"):
            shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__", "*.ipynb"))
        for name in ("conftest.py", "pyproject.toml"):
            shutil.copy(ROOT / name, copy / name)
        (copy / "data").mkdir()
        shutil.copy(ROOT / "data" / "manifest.tsv", copy / "data" / "manifest.tsv")
        target = copy / mutant.path
        text = target.read_text()
        if text.count(mutant.old) != 1:
            return False, f"not planted: the text is no longer in {mutant.path} exactly once"
        target.write_text(text.replace(mutant.old, mutant.new))
        env = {**os.environ, "PYTHONPATH": str(copy)}
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *mutant.tests], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=1800)
        failed = [line.split(" ")[1] for line in done.stdout.splitlines() if line.startswith("FAILED ")]
        return done.returncode != 0, failed[0] if failed else done.stdout.strip().splitlines()[-1]


def main() -> None:
    from lib.provenance import git_commit

    caught, lines = 0, [f"Mutants planted in a copy of commit {git_commit()}; the tests that cover each, run there.", "",
                        "| mutant | file | caught | by |", "|---|---|---|---|"]
    for mutant in MUTANTS:
        ok, why = run(mutant)
        caught += ok
        print(f"{'caught' if ok else 'MISSED'}: {mutant.what} ({why})", flush=True)
        lines.append(f"| {mutant.what} | `{mutant.path}` | {'yes' if ok else 'NO'} | `{why}` |")
    print(f"\n{caught} of {len(MUTANTS)} mutants caught")
    OUT.write_text("\n".join([*lines, "", f"{caught} of {len(MUTANTS)} mutants caught."]) + "\n")
    if caught < len(MUTANTS):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
