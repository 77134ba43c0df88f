"""What a chapter run leaves behind: its claims with verdicts, its tables and figures, its run card.

A chapter makes one :class:`ChapterResults`, records every claim of its paper with
:meth:`ChapterResults.claim` (the paper's value, ours over seeds, the rule, and the scale the
claim needs; see :mod:`lib.verdicts`), saves its figures, and finally calls
:meth:`ChapterResults.save`, which writes ``results.json`` with the run card: profile, settings,
seeds, device and threads, library versions, git commit, the code digest, data checksums,
initialisation and wall time. ``python -m lib.scorecard`` gathers every ``results.json`` into the
book's scorecard.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from .budget import check_quick_budget, quick_cost
from .evaluation import mean_ci
from .provenance import ROOT, device_description, library_versions, numeric_path, pin_threads, this_machine
from .settings import PROFILES
from .keys import plain
from .readings import trained_on
from .units import Records
from .verdicts import NEEDS_LARGER, NOT_RUN, PROFILE_SCALE, UNTESTABLE, Region, Scale, judge, legacy_verdict

GUARD_KEY = "book_claims"  # the output metadata that carries a claims table's values (see ChapterResults.show_claims)
GUARD_DATA_KEY = "book_data"  # ... and the data files a run read (see ChapterResults.show_saved)


def comparable_values(claim: dict) -> list[float]:
    """A claim's values on one scale whatever its printed unit, for comparing two runs of it (the
    regression guard, ``benchmarks/guard_drift.py``): accuracy points back to fractions of 1."""
    return [v / 100 for v in claim["ours"]] if claim.get("unit") == "points" else list(claim["ours"])
RESULTS_ENV = "BOOK_RESULTS_ROOT"  # when set, where every chapter run writes instead of its results_root (the test suite sets it)


def results_dir(results_root: str | Path, profile: str, chapter: str) -> Path:
    """Where a run of ``chapter`` writes its results, units and checkpoints: ``<results_root>/<profile>/<chapter>``,
    or the same under ``$BOOK_RESULTS_ROOT`` when it is set, so that a test run neither reads nor rewrites the
    book's own results and checkpoints."""
    elsewhere = os.environ.get(RESULTS_ENV)
    if elsewhere and not Path(elsewhere).is_absolute():
        raise ValueError(f"${RESULTS_ENV}={elsewhere!r} must be an absolute path (a chapter's kernel runs in chapters/)")
    return Path(elsewhere or results_root) / profile / chapter

class ChapterResults:
    """Collects one chapter run's claims, tables and figures, and writes them with the run card."""

    def __init__(self, chapter: str, settings, experiment, *, data: str = "the paper's data"):
        """``settings``: the chapter's settings (their ``run`` field says profile, seeds and results root);
        ``experiment``: the chapter's experiment module, whose code the run card's digest covers;
        ``data``: what the run trains on, in words, for its verdicts ("a stand-in for the paper's data")."""
        run = settings.run
        check_quick_budget(experiment, settings)  # before any training, for a run through papermill directly
        self.chapter, self.profile, self.data = chapter, run.profile, data
        self.scale = PROFILE_SCALE[run.profile]
        self.threads = pin_threads(run.profile)  # before any training: the run card records them
        self.dir = results_dir(run.results_root, run.profile, chapter)
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)
        self.settings, self.seeds = plain(settings), list(run.seeds)
        self.claims: list[dict] = []
        self.tables: dict[str, list[dict]] = {}
        self.convergence: dict | None = None
        self.checks: list[dict] = []
        self.started = time.time()
        self.started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.experiment = experiment.__name__.removeprefix("lib.")
        self.versions = library_versions(self.experiment)  # taken now: the code that runs, not the code on disk at the end
        self.units = Records(self.dir / "units", self.versions["lib"], self.checkpoints,  # every training's record (lib.units)
                             stamp={"git": self.versions["git"], "machine": this_machine()})

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    def converged(self, converged: bool, criterion: str) -> None:
        """Record whether the run's main models converged (by ``criterion``). A run at the converged
        scale whose models did not converge can test no claim that needs converged runs."""
        self.convergence = {"converged": bool(converged), "criterion": criterion}
        if self.scale == Scale.CONVERGED and not converged:
            self.scale = Scale.TOY

    def claim(self, id: str, claim: str, paper: float | str, ours: list[float], rule: Region, *, needs: Scale, unit: str = "",
              untestable: str | None = None, stand_in: str | None = None, timing: bool = False) -> dict:
        """Record one claim of the paper: our values over seeds against the paper's, judged by ``rule``
        when this run is at the scale the claim ``needs``, or on the smaller model ``stand_in`` names
        (see :func:`lib.verdicts.judge`; ``untestable`` says why no run here can test it, and what would).

        ``unit="points"``: ``ours`` and ``rule`` are differences of accuracies as fractions of 1; they are
        recorded and shown in accuracy points (× 100), the unit the papers print. ``timing``: the
        values are measured times (or their ratios), which differ between machines; the regression
        guard leaves them out."""
        values = [float(v) for v in ours]
        if not values or any(not math.isfinite(v) for v in values):
            raise ValueError(f"claim {id!r}: no valid values to judge ({values})")
        if unit == "points":
            values, rule = [100 * v for v in values], rule.scaled(100)
        interval = mean_ci(values)
        verdict, why = judge(rule, interval, needs=needs, scale=self.scale, untestable=untestable, stand_in=stand_in, data=self.data)
        judged_on = stand_in if self.scale < needs and verdict not in (UNTESTABLE, NEEDS_LARGER) else None
        row = {
            "id": id, "claim": claim, "paper": paper, "ours": values, "mean": interval.mean, "low": interval.low, "high": interval.high,
            "n": interval.n, "unit": unit, "rule": rule.short(), "region": rule.as_list(), "why": why, "needs": needs.name,
            "scale": self.scale.name, "profile": self.profile, "verdict": verdict, "stand_in": judged_on, "timing": timing,
        }
        self._add(row)
        return row

    def not_run(self, id: str, claim: str, paper: float | str, reason: str, *, needs: Scale, untestable: bool = False) -> dict:
        """A claim this run could not test; never a made-up number. ``untestable``: nothing any machine
        here can reach tests it (its data, say), and ``reason`` says what would: the verdict is
        "untestable here" rather than "not run"."""
        row = {"id": id, "claim": claim, "paper": paper, "ours": [], "n": 0, "unit": "", "rule": "", "why": reason,
               "needs": needs.name, "scale": self.scale.name, "profile": self.profile, "verdict": UNTESTABLE if untestable else NOT_RUN}
        self._add(row)
        return row

    def check(self, name: str, values, *, above: float | None = None, below: float | None = None, reference: float | None = None,
              measured: str) -> dict:
        """A code-health check: every one of ``values`` (one a seed, or one a run) must lie above
        ``above`` and below ``below``. It says that the code ran as intended (a model beats chance, a
        loss fell), never what the method achieved: those are claims and reported numbers.

        ``reference`` is what code that does nothing reaches (chance; 1 for a ratio of losses), from
        which ``benchmarks/any_choice.py`` measures each value's distance; ``measured`` says where the
        bound comes from, e.g. "seeds 0-19 and the choices of benchmarks/any_choice.py: worst 0.91;
        bound halfway from chance". Nothing is raised here:
        :meth:`save` writes every check's values with the results, and :meth:`stop_on_failed_checks`
        then fails the run, so a failing run still leaves its evidence."""
        values = [float(v) for v in values]
        if not values or (above is None and below is None):
            raise ValueError(f"check {name!r} needs values and a bound (above= or below=)")
        ok = all(math.isfinite(v) and (above is None or v > above) and (below is None or v < below) for v in values)
        row = {"name": name, "values": values, "above": above, "below": below, "reference": reference, "ok": ok, "measured": measured}
        self.checks = [c for c in self.checks if c["name"] != name] + [row]
        return row

    def stop_on_failed_checks(self) -> None:
        """Raise an AssertionError naming every failed check (after :meth:`save`, which keeps their values)."""
        failed = [c for c in self.checks if not c["ok"]]
        if failed:
            raise AssertionError("code-health checks failed:\n" + "\n".join(
                f"- {c['name']}: {[round(v, 4) for v in c['values']]} not "
                + " and ".join(t for t in (f"above {c['above']:.4g}" if c["above"] is not None else "",
                                            f"below {c['below']:.4g}" if c["below"] is not None else "") if t)
                + f" ({c['measured']})" for c in failed))

    def _add(self, row: dict) -> None:
        self.claims = [c for c in self.claims if c["id"] != row["id"]] + [row]

    def show_claims(self, claims: list[dict] | None = None) -> None:
        """In a notebook: the claims table (all of this run's claims, or ``claims``). The output also
        carries the claims' values as metadata, which the test suite's regression guard compares with
        the next execution of the committed notebook."""
        from IPython.display import Markdown, display

        claims = self.claims if claims is None else claims
        guard = [{"id": c["id"], "ours": c["ours"], "unit": c.get("unit", ""), "timing": c.get("timing", False)} for c in claims]
        display(Markdown(claims_markdown(claims)), metadata={GUARD_KEY: guard})

    def show_saved(self) -> None:
        """In a notebook, after :meth:`save`: where the results went. The output also carries which data
        files the run read (their digests), so that the regression guard compares a later execution
        with this one only when both read the same data."""
        from IPython.display import Markdown, display

        display(Markdown(f"Results, figures and unit records written to `{self.dir}`."), metadata={GUARD_DATA_KEY: self.data_read})

    def show_changed_readings(self, results_root: str | Path, changes: dict[str, str], shown: dict[str, dict]) -> None:
        """In a notebook: for this run's profile and each stronger one whose earlier readings were kept
        (:mod:`lib.readings`), the claims whose reading changed: earlier rule and verdict beside this run's
        rule, the verdict of that profile's newer run (``shown``, from :func:`show_stronger_profiles`; for
        this run's own profile, this run) once there is one, and why (``changes``: claim id → reason)."""
        from IPython.display import Markdown, display

        from .readings import changed_readings_markdown

        order = list(PROFILE_SCALE)
        judged = {**shown, self.profile: {"claims": self.claims, "run_card": {"started": self.started_at}}}
        for profile in order[order.index(self.profile):]:
            table = changed_readings_markdown(Path(results_root) / profile / self.chapter, self.claims, judged.get(profile), changes)
            if table:
                display(Markdown(table))

    def show_summary(self, shown: dict[str, dict], *, method: str, easy: str, difficult: str, left_open: str) -> None:
        """In a notebook, after :meth:`save`: the reproducibility summary (:func:`lib.readings.reproducibility_summary`)
        over this run and the stronger profiles' committed runs (``shown``)."""
        from IPython.display import Markdown, display

        from .readings import reproducibility_summary

        by_profile = {**shown, self.profile: {"claims": self.claims, "run_card": self.card}}
        display(Markdown(reproducibility_summary(by_profile, method=method, easy=easy, difficult=difficult, left_open=left_open,
                                                 ids=[c["id"] for c in self.claims])))

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
            "scale": self.scale.name,
            "settings": self.settings,
            "seeds": self.seeds,
            "device": device_description(device),
            "threads": self.threads,
            "numerics": numeric_path(device, self.settings),
            "results_dir": str(self.dir),
            "versions": self.versions,
            "experiment": self.experiment,
            "data": data,
            "initialisation": initialisation,
            "convergence": self.convergence,
            **self.units.summary(),
            "started": self.started_at,
            "wall_time_s": round(time.time() - self.started, 1),
            **(extra or {}),
        }
        self.data_read, self.card = data_read(data), card
        path = self.dir / "results.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"run_card": card, "claims": self.claims, "checks": self.checks, "tables": self.tables}, indent=1, default=str))
        tmp.replace(path)
        return path


def data_read(data: list[dict]) -> list[dict]:
    """The datasets of a run card's ``data`` as (dataset, sorted file digests): what two runs must share
    to be compared value for value (the folders they were read from may differ)."""
    return sorted(({"dataset": d.get("dataset", "?"), "digests": sorted(d.get("files", {}).values())} for d in data),
                  key=lambda d: d["dataset"])


def load_results(results_root: str | Path, profile: str, chapter: str) -> dict | None:
    """A chapter's saved ``results.json`` for a profile, or None when that profile has not been run.
    A run card of an older format (no ``scale`` or ``convergence``) is refused with how to renew it."""
    path = Path(results_root) / profile / chapter / "results.json"
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if not {"scale", "convergence"} <= saved["run_card"].keys():
        raise ValueError(f"{path}: a run card of an older format (it has no 'scale' or 'convergence'): render the page "
                         f"again from its records, `python -m lib.run chapters/{chapter}.py --profile {profile}`")
    for c in saved["claims"]:
        c["verdict"] = legacy_verdict(c)  # an earlier record's "untested at this scale", in today's two words
    return saved


def run_card_markdown(card: dict) -> str:
    """The run card as a short list, for a chapter to show beside results it did not compute itself."""
    data = "; ".join(f"{d['dataset']} ({d.get('format', 'format not recorded')})" for d in card["data"]) or "none recorded"
    conv = card["convergence"]
    made_by = "; ".join(f"{m['machine']} at commit {m['git']}" for m in card["units_made_by"]) or "none"
    lines = [
        f"- profile **{card['profile']}**, seeds {card['seeds']}, device {card['device']}, {card['numerics']}",
        f"- torch {card['versions']['torch']}, torchvision {card['versions']['torchvision']}, python {card['versions']['python']}, "
        f"commit {card['versions']['git']}, code digest {card['versions']['lib']}",
        f"- data: {data}; initialisation: {card['initialisation']}",
        f"- started {card['started']}, wall time {card['wall_time_s'] / 60:.1f} min; {card['units_run']} units trained by this run, "
        f"{card['units_from_records']} read from earlier records, {card['units_resumed']} resumed from checkpoints",
        f"- training time of all its units {card['units_wall_time_s'] / 60:.1f} min, made on: {made_by}",
    ]
    if conv:
        lines.append(f"- converged: **{'yes' if conv['converged'] else 'no'}** ({conv['criterion']})")
    return "\n".join(lines)


UNIT_SUFFIX = {"points": " pts", "×": "×"}  # a unit printed after the number; other units are the paper's own scale


def format_ours(c: dict) -> str:
    if c["verdict"] == NOT_RUN or not c["ours"]:
        return "—"
    suffix = UNIT_SUFFIX.get(c.get("unit", ""), "")
    if c["n"] < 2:
        return f"{c['mean']:.3g}{suffix} (n=1)"
    return f"{c['mean']:.3g} ± {c['high'] - c['mean']:.2g}{suffix}"


def format_verdict(c: dict) -> str:
    """The verdict in bold, and the smaller model it was judged on, if any."""
    return f"**{c['verdict']}**" + (f" (stand-in: {c['stand_in']})" if c.get("stand_in") else "")


def format_rule(c: dict) -> str:
    """The rule of a judged claim; the reason of one that is not judged."""
    if c["verdict"] in (UNTESTABLE, NEEDS_LARGER, NOT_RUN) or not c["rule"]:
        return c["why"] + (f" (rule when judged: {c['rule']})" if c["rule"] else "")
    return c["rule"]


def claims_markdown(claims: list[dict]) -> str:
    """The claims as a markdown table (the chapter shows it; the scorecard reuses it)."""
    lines = ["| claim | paper | ours (mean ± 95% CI) | n | verdict | rule |", "|---|---|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['claim']} | {c['paper']} | {format_ours(c)} | {c['n']} | {format_verdict(c)} | {format_rule(c)} |")
    return "\n".join(lines)


def run_scale(card: dict, profile: str) -> str:
    """What a saved run could test, in words: its profile's scale, or, for a run whose main models
    missed the chapter's convergence criterion, the toy scale it fell to (see ``converged``)."""
    scale = Scale[card["scale"]]
    if scale < PROFILE_SCALE[profile] and not (card["convergence"] or {}).get("converged", True):
        return f"{scale.label}: its main models did not converge, so its claims are shown unjudged"
    return scale.label


def show_stronger_profiles(results_root: str | Path, chapter: str, profile: str, figures: list[str]) -> dict[str, dict]:
    """In a notebook: the committed results of every profile stronger than ``profile`` (cpu, then
    full): their claims, run card and ``figures``, or the command that would make them.

    Returns ``{profile: saved results}`` for the profiles that have results.
    """
    from IPython.display import Image, Markdown, display

    shown = {}
    order = list(PROFILE_SCALE)
    for stronger in order[order.index(profile) + 1:]:
        saved = load_results(results_root, stronger, chapter)
        if saved is None and not (ROOT / "chapters" / "profiles" / f"{chapter}.{stronger}.yaml").is_file():
            continue  # the chapter has no such profile
        if saved is None:
            display(Markdown(f"**{stronger} profile**: no results yet. Run `python -m lib.run chapters/{chapter}.py --profile {stronger}`."))
            continue
        shown[stronger] = saved
        display(Markdown(f"**{stronger} profile** ({run_scale(saved['run_card'], stronger)})\n\n" + claims_markdown(saved["claims"])
                         + "\n\n**Run card**\n\n" + run_card_markdown(saved["run_card"])))
        for name in figures:
            path = Path(results_root) / stronger / chapter / "figures" / f"{name}.png"
            if path.is_file():
                display(Image(filename=str(path), width=760))
    return shown


def profile_summary(chapter: str, profile: str) -> str:
    """What a profile of a chapter runs: the first sentence of its profile file's header (after
    "<profile> profile:"), or the book-wide description for the quick profile."""
    path = ROOT / "chapters" / "profiles" / f"{chapter}.{profile}.yaml"
    if profile == "quick" or not path.is_file():
        return PROFILES[profile]
    header = " ".join(line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#"))
    header = header.split("profile:", 1)[-1].strip()
    return re.split(r"\.\s+(?=[A-Z])", header, maxsplit=1)[0].rstrip(".")  # "Fig. 5" ends no sentence


OUTSIDE_A_CLONE = (
    "**On Colab, on Binder, or from a downloaded notebook.** The page's launch button opens this chapter on Colab or "
    "Binder, and its download button gives the notebook. Binder starts in a clone of the book. Anywhere else, the "
    "chapter's first cell (collapsed above) clones the book at the commit the page was built from, installs it with "
    "its pinned packages (`pip install -e`) and goes on in its `chapters/` folder; inside a clone it does nothing. "
    "`tests/test_outside_clone.py` checks this offline: a copy of the chapter, run in an empty folder with the clone "
    "made from a local path, runs its first cells. ")


def run_this_chapter(chapter: str, experiment, outside_a_clone: str = "Its datasets download on first use "
                     "(torchvision's downloaders; that needs the internet, which the offline check does not use).") -> None:
    """In a notebook, at the top of a chapter: how to run it in each profile, with lib.run and with
    papermill directly, what each profile runs (its profile file's header) and how long it takes: the
    quick profile's measured minutes (``lib.budget``), the cpu and full profiles'
    training time from their committed run cards, or that they have not been run; and how it runs
    outside a clone (Colab, Binder, a downloaded notebook), ``outside_a_clone`` saying what its data needs."""
    from IPython.display import Markdown, display

    profiles = [p for p in PROFILES if p == "quick" or (ROOT / "chapters" / "profiles" / f"{chapter}.{p}.yaml").is_file()]
    parts = []
    for profile in profiles:
        saved = load_results(ROOT / "results", profile, chapter) if profile != "quick" else None
        if profile == "quick":
            when = f"about {quick_cost(experiment).minutes:g} min on a 2-core CPU"
        elif saved:
            card = saved["run_card"]
            minutes = card["units_wall_time_s"] / 60
            when = (f"its committed run's trainings took {minutes:.0f} min in all on {trained_on(card)} (trainings run side by side "
                    "each counted; the profile file gives the wall time)")
        else:
            when = "not run yet; `--plan` lists its units and estimates their minutes on one H100"
        flag = "" if profile == "quick" else f" --profile {profile}"
        option = "" if profile == "quick" else f" \\\n    -f chapters/profiles/{chapter}.{profile}.yaml"
        parts.append(f"**{profile}**: {profile_summary(chapter, profile)}. {when[0].upper() + when[1:]}.\n\n"
                     f"```bash\npython -m lib.run chapters/{chapter}.py{flag}\n"
                     f"mkdir -p results/{profile}/{chapter} && papermill chapters/{chapter}.ipynb \\\n"
                     f"    results/{profile}/{chapter}/{chapter}.ipynb --cwd chapters{option}\n```")
    display(Markdown(
        "````{admonition} Run this chapter\n:class: tip dropdown\n\n"
        "From the repository's root, with the datasets in `$BOOK_DATA_DIR` (an absolute path, e.g. "
        "`export BOOK_DATA_DIR=$HOME/datasets`; `data/README.md` lists what it holds). With the book's runner, "
        "`-p name value` changes one more parameter (the value is YAML: `-p seeds '[0, 1]'`, `-p smoke true`); "
        "with papermill, `-p name value` for a number or a string, `-y 'name: value'` for a list or a boolean "
        "(a profile file sets every parameter it changes, `profile` included).\n\n" + "\n\n".join(parts) + "\n\n"
        + OUTSIDE_A_CLONE + outside_a_clone + "\n````"))
