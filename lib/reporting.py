"""What a chapter run leaves behind: its claims with verdicts, its figures, and its run card.

A chapter makes one :class:`ChapterResults`, records every claim of its paper
with :meth:`ChapterResults.claim` (the paper's value, ours over seeds, and the
rule that decides the verdict), saves its figures, and finally calls
:meth:`ChapterResults.save`, which writes ``results.json`` with the run card:
profile, settings, seeds, device, library versions, data checksums,
initialisation and wall time. ``python -m lib.scorecard`` gathers every
``results.json`` into the book's scorecard.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

from .evaluation import Interval, mean_ci
from .training import code_digest, plain

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"


@dataclass(frozen=True)
class AtLeast:
    """Higher is better: reproduced if the 95% interval reaches the paper's value or more."""

    value: float

    def describe(self) -> str:
        return f"reproduced if the 95% interval reaches {self.value:g} or more"

    def verdict(self, ours: Interval) -> str:
        return REPRODUCED if ours.high >= self.value else NOT_REPRODUCED


@dataclass(frozen=True)
class AtMost:
    """Lower is better: reproduced if the 95% interval reaches the paper's value or less."""

    value: float

    def describe(self) -> str:
        return f"reproduced if the 95% interval reaches {self.value:g} or less"

    def verdict(self, ours: Interval) -> str:
        return REPRODUCED if ours.low <= self.value else NOT_REPRODUCED


@dataclass(frozen=True)
class Between:
    """Reproduced if the mean over seeds lies in [low, high] (a range the paper states)."""

    low: float
    high: float

    def describe(self) -> str:
        return f"reproduced if the mean lies in [{self.low:g}, {self.high:g}]"

    def verdict(self, ours: Interval) -> str:
        return REPRODUCED if self.low <= ours.mean <= self.high else NOT_REPRODUCED


@dataclass(frozen=True)
class Above:
    """A difference or gain: reproduced if the whole 95% interval lies above ``value``."""

    value: float = 0.0

    def describe(self) -> str:
        return f"reproduced if the whole 95% interval lies above {self.value:g}"

    def verdict(self, ours: Interval) -> str:
        return REPRODUCED if ours.n >= 2 and ours.low > self.value else NOT_REPRODUCED


Rule = AtLeast | AtMost | Between | Above


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def library_versions(experiment: str | None = None) -> dict[str, str]:
    import numpy
    import sklearn
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "scikit-learn": sklearn.__version__,
        "lib": code_digest(experiment),  # the chapter's experiment module and every lib file it imports
        "git": git_commit(),
    }


def git_commit() -> str:
    """The project's commit, with "+changes" when the working tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "chapters"], cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+changes" if dirty else "")


class ChapterResults:
    """Collects one chapter run's claims, tables and figures, and writes them with the run card."""

    def __init__(self, chapter: str, settings, experiment):
        """``settings``: the chapter's settings (their ``run`` field says profile, seeds and results root);
        ``experiment``: the chapter's experiment module, whose code the run card's digest covers."""
        run = settings.run
        self.chapter, self.profile = chapter, run.profile
        self.dir = Path(run.results_root) / run.profile / chapter
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)
        self.settings, self.seeds = plain(settings), list(run.seeds)
        self.claims: list[dict] = []
        self.tables: dict[str, list[dict]] = {}
        self.started = time.time()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.experiment = experiment.__name__.removeprefix("lib.")
        self.versions = library_versions(self.experiment)  # taken now: the code that runs, not the code on disk at the end

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    def claim(self, id: str, claim: str, paper: float | str, ours: list[float], rule: Rule, unit: str = "") -> dict:
        """Record one claim of the paper: our values over seeds against the paper's, judged by ``rule``."""
        values = [float(v) for v in ours]
        if not values or any(math.isnan(v) for v in values):
            raise ValueError(f"claim {id!r}: no valid values to judge ({values})")
        interval = mean_ci(values)
        row = {
            "id": id,
            "claim": claim,
            "paper": paper,
            "ours": values,
            "mean": interval.mean,
            "low": interval.low,
            "high": interval.high,
            "n": interval.n,
            "unit": unit,
            "rule": rule.describe(),
            "verdict": rule.verdict(interval),
        }
        self._add(row)
        return row

    def not_run(self, id: str, claim: str, paper: float | str, reason: str) -> dict:
        """A claim this run could not test (say, its dataset is unreachable); never a made-up number."""
        row = {"id": id, "claim": claim, "paper": paper, "ours": [], "n": 0, "unit": "", "rule": reason, "verdict": NOT_RUN}
        self._add(row)
        return row

    def _add(self, row: dict) -> None:
        self.claims = [c for c in self.claims if c["id"] != row["id"]] + [row]

    def table(self, name: str, rows: list[dict]) -> None:
        self.tables[name] = rows

    def figure(self, fig, name: str) -> Path:
        path = self.dir / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        return path

    def save(self, *, device: torch.device, data: list[dict], initialisation: str, extra: dict | None = None) -> Path:
        """Write ``results.json``: claims, tables and the run card of this run."""
        card = {
            "chapter": self.chapter,
            "profile": self.profile,
            "settings": self.settings,
            "seeds": self.seeds,
            "device": device_description(device),
            "versions": self.versions,
            "data": data,
            "initialisation": initialisation,
            "started": self.started_at,
            "wall_time_s": round(time.time() - self.started, 1),
            **(extra or {}),
        }
        path = self.dir / "results.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_card": card, "claims": self.claims, "tables": self.tables}, indent=1, default=str))
        tmp.replace(path)
        return path


def load_results(results_root: str | Path, profile: str, chapter: str) -> dict | None:
    """A chapter's saved ``results.json`` for a profile, or None when that profile has not been run."""
    path = Path(results_root) / profile / chapter / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def run_card_markdown(card: dict) -> str:
    """The run card as a short list, for a chapter to show beside results it did not compute itself."""
    data = "; ".join(f"{d['dataset']} ({d.get('format', 'format not recorded')})" for d in card["data"]) or "none recorded"
    return "\n".join([
        f"- profile **{card['profile']}**, seeds {card['seeds']}, device {card['device']}",
        f"- torch {card['versions']['torch']}, torchvision {card['versions']['torchvision']}, python {card['versions']['python']}, commit {card['versions'].get('git', '?')}",
        f"- data: {data}; initialisation: {card['initialisation']}",
        f"- started {card['started']}, wall time {card['wall_time_s'] / 60:.1f} min"
        + (f" ({card['trainings_resumed_from_checkpoints']} of {card['trainings']} trainings resumed from checkpoints)" if card.get("trainings_resumed_from_checkpoints") else ""),
    ])


def claims_markdown(claims: list[dict]) -> str:
    """The claims as a markdown table (the chapter shows it; the scorecard reuses it)."""
    lines = ["| claim | paper | ours (mean ± 95% CI) | n | verdict | rule |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['claim']} | {c['paper']} | {format_ours(c)} | {c['n']} | **{c['verdict']}** | {c['rule']} |")
    return "\n".join(lines)


def format_ours(c: dict) -> str:
    if c["verdict"] == NOT_RUN:
        return "—"
    if c["n"] < 2:
        return f"{c['mean']:.3g}"
    return f"{c['mean']:.3g} ± {c['high'] - c['mean']:.2g}"


def show_full_profile(results_root: str | Path, chapter: str, figures: list[str]) -> dict | None:
    """In a notebook: the committed full-profile claims, run card and ``figures`` of ``chapter``.

    Returns the saved results (for chapter-specific lines), or None after printing the command
    that would make them.
    """
    from IPython.display import Image, Markdown, display

    full = load_results(results_root, "full", chapter)
    if full is None:
        print(f"No full-profile results yet: python -m lib.run chapters/{chapter}.py --profile full")
        return None
    display(Markdown(claims_markdown(full["claims"]) + "\n\n**Run card**\n\n" + run_card_markdown(full["run_card"])))
    for name in figures:
        path = Path(results_root) / "full" / chapter / "figures" / f"{name}.png"
        if path.is_file():
            display(Image(filename=str(path), width=760))
    return full
