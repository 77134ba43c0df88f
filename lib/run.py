"""Run chapters through papermill, in the quick, cpu or full profile.

    python -m lib.run chapters/04_vae_cluster_labelling.py                      # quick profile
    python -m lib.run chapters/04_vae_cluster_labelling.py --profile full --seeds 0 1 2
    python -m lib.run chapters/04_vae_cluster_labelling.py -p epochs 3
    python -m lib.run chapters/0[1-3]*.py --profile full --plan                 # the units, their H100 minutes, what is done
    python -m lib.run chapters/04_vae_cluster_labelling.py --profile full --from-records   # render from merged shards (lib.shards)

The quick profile is the defaults of each chapter's ``parameters`` cell; the
others are ``chapters/profiles/<chapter>.<profile>.yaml``. Every parameter is
checked before a kernel starts: an unknown name, a value of the wrong type
and a value out of range are refused with a message saying what to change.
The range checks are the chapter's own: the runner builds the chapter's
settings, the ``Settings`` of the module the chapter imports as
``experiment``, exactly as the chapter's first cell does.
Each run writes ``results/<profile>/<chapter>/`` (under the chapter's ``results_root``): the executed notebook,
``figures/``, ``units/`` (a record per training, see ``lib.units``) and ``results.json`` with the run
card. The committed ``chapters/<chapter>.ipynb`` (the quick run the regression guard compares with) is
left alone unless ``--refresh-notebooks`` asks for it on a quick run with the defaults (``make
notebooks``). With ``BOOK_RESULTS_ROOT`` set (an absolute path), everything goes there instead: the
test suite runs chapters so. With ``BOOK_DEADLINE`` set (a Unix time), no unit starts that its estimate says would not end
before it: the run stops with exit status 3, and the same command later goes on from the records.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import yaml

from .budget import check_quick_budget
from .settings import PROFILES

ROOT = Path(__file__).resolve().parents[1]
BUDGET_EXIT = 3  # the exit status when $BOOK_DEADLINE stopped a run between units (run the same command again)


class ParameterError(ValueError):
    """A profile, parameter name or value that the chapter cannot run with."""


def read_defaults(chapter: Path) -> dict:
    """The ``parameters`` cell of a Jupytext percent-format chapter, as ``{name: value}``."""
    import jupytext

    nb = jupytext.read(chapter)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{chapter} must have exactly one cell tagged 'parameters', found {len(cells)}")
    defaults = {}
    for node in ast.parse(cells[0].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ParameterError(f"{chapter}: the parameters cell may hold only `name = literal` lines ({ast.unparse(node)!r})")
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    return defaults


def experiment_module(chapter: Path) -> ModuleType | None:
    """The library module a chapter imports as ``experiment`` (``from lib import x as experiment``), if any."""
    import jupytext

    for cell in jupytext.read(chapter).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "lib":
                for alias in node.names:
                    if alias.asname == "experiment":
                        return importlib.import_module(f"lib.{alias.name}")
    return None


def check_settings(chapter: Path, params: dict):
    """Build the chapter's settings from ``params`` as the chapter will; the settings, or None for a
    chapter without an experiment module. Raises ParameterError naming the bad value."""
    experiment = experiment_module(chapter)
    if experiment is None:
        return None
    try:
        settings = experiment.Settings(**params)
        check_quick_budget(experiment, settings)
        return settings
    except ValueError as err:
        raise ParameterError(f"{chapter.name}: {err}") from err
    except TypeError as err:  # the parameters cell and the Settings disagree: a defect of the chapter, not of the input
        raise ParameterError(f"{chapter.name}'s parameters cell does not match {experiment.__name__}.Settings: {err}") from err


def _type_ok(default, value) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, list):
        return isinstance(value, list) and all(_type_ok(default[0], v) for v in value) if default else isinstance(value, list)
    return isinstance(value, type(default))


def resolve_parameters(chapter: Path, profile: str, seeds: list[int] | None, overrides: dict) -> tuple[dict, dict]:
    """All parameters of a run, and those that differ from the chapter's defaults (what papermill injects)."""
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    defaults = read_defaults(chapter)
    params = dict(defaults)
    if profile != "quick":
        profile_file = ROOT / "chapters" / "profiles" / f"{chapter.stem}.{profile}.yaml"
        if not profile_file.is_file():
            raise ParameterError(f"{chapter.name} has no {profile} profile: {profile_file} does not exist")
        params.update(yaml.safe_load(profile_file.read_text()) or {})
        params["profile"] = profile
    if seeds is not None:
        params["seeds"] = list(seeds)
    params.update(overrides)
    for name, value in params.items():
        if name not in defaults:
            near = difflib.get_close_matches(name, defaults, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ParameterError(f"{chapter.name} has no parameter {name!r}{hint}; its parameters are: {', '.join(defaults)}")
        if not _type_ok(defaults[name], value):
            raise ParameterError(
                f"{chapter.name}: parameter {name}={value!r} should be of the type of its default {defaults[name]!r}"
            )
    if params.get("profile", profile) != profile:
        raise ParameterError(f"parameter profile={params['profile']!r} contradicts --profile {profile}")
    check_settings(chapter, params)
    changed = {k: v for k, v in params.items() if defaults.get(k) != v}
    return params, changed


def planned_units(chapter: Path, profile: str, params: dict):
    """The chapter's units for these parameters (``experiment.plan``), and their records' folder."""
    from .keys import code_digest
    from .reporting import results_dir
    from .units import Records

    experiment = experiment_module(chapter)
    settings = check_settings(chapter, params)
    results = results_dir(chapter.parent / params.get("results_root", "../results"), profile, chapter.stem).resolve()
    records = Records(results / "units", code_digest(experiment.__name__.removeprefix("lib.")), None)
    return experiment.plan(settings, records), records


def check_units(chapter: Path, profile: str, params: dict, results_json: Path) -> None:
    """Refuse a run whose rendered units (its run card's) are not exactly those its plan lists: the
    plan and the run derive them from the same unit functions, and this keeps them so."""
    units, _ = planned_units(chapter, profile, params)
    planned, rendered = {u.name for u in units}, set(json.loads(results_json.read_text())["run_card"]["units"])
    if planned != rendered:
        raise SystemExit(f"\n{chapter.name}: the units it rendered are not those --plan lists (a defect of the chapter or its experiment): "
                         f"rendered but not planned {sorted(rendered - planned)}, planned but not rendered {sorted(planned - rendered)}")


def check_records(chapter: Path, params: dict, profile: str) -> None:
    """Refuse (``--from-records``) a run that would train: name the planned units that have no record."""
    units, records = planned_units(chapter, profile, params)
    missing = [u.name for u in units if not records.done(u)]
    if missing:
        raise ParameterError(f"{chapter.name}: --from-records, but {len(missing)} of its {len(units)} planned units have no record in "
                             f"{records.directory}: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} (merge the shards' "
                             "units/ folders there first: python -m lib.shards merge DEST SOURCES...)")


def plan(chapter: Path, profile: str, params: dict) -> tuple[list[str], float, int, int, float | None]:
    """The chapter's units for these parameters (lib.units): one line each, estimated H100 minutes, units,
    done, and for the cpu profile its estimated minutes on the CPU ``benchmarks/cpu_roofline.py`` measured
    (None when that benchmark has no rate for the chapter)."""
    from .units import cpu_training_rate, plan_lines

    units, records = planned_units(chapter, profile, params)
    rate = cpu_training_rate(int(chapter.name[:2]), bool(params.get("amp", False))) if profile == "cpu" else None
    lines = plan_lines(units, records, rate[0] if rate else None)
    if rate:
        lines.insert(0, f"CPU minutes: {rate[1]} (benchmarks/cpu_roofline.py); wall time where the profile's header says how it runs")
    cpu = sum(u.work.cpu_minutes(rate[0]) for u in units) if rate else None
    return lines[:-1], sum(u.work.h100_minutes() for u in units), len(units), sum(records.done(u) for u in units), cpu


class RefreshError(ValueError):
    """A run whose notebook cannot replace the committed one."""


def check_refresh(profile: str, changed: dict) -> None:
    """Refuse ``--refresh-notebooks`` for any run but the quick profile's defaults into the book's own results."""
    from .reporting import RESULTS_ENV

    if profile != "quick" or changed:
        raise RefreshError(f"--refresh-notebooks replaces the committed quick run: it takes the quick profile with its defaults, "
                           f"not --profile {profile}" + (f" with {changed}" if changed else ""))
    if os.environ.get(RESULTS_ENV):
        raise RefreshError(f"--refresh-notebooks with ${RESULTS_ENV} set: unset it, so the run is the book's own")


def execute(chapter: Path, profile: str, params: dict, changed: dict, refresh: bool = False) -> Path:
    """Execute one chapter with papermill; return the executed notebook's path. ``refresh``: copy it over
    the committed ``chapters/<chapter>.ipynb`` (see :func:`check_refresh`)."""
    import jupytext
    import papermill

    from .reporting import results_dir

    out_dir = results_dir(chapter.parent / params.get("results_root", "../results"), profile, chapter.stem).resolve()  # as the chapter resolves it
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / f"{chapter.stem}.ipynb"
    partial = out_dir / f"{chapter.stem}.partial.ipynb"  # replaces the executed notebook only once the run succeeds
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{chapter.stem}.ipynb"
        nb = jupytext.read(chapter)  # papermill reads notebooks, not .py
        nb.metadata.setdefault("kernelspec", {"name": "python3", "display_name": "Python 3", "language": "python"})
        jupytext.write(nb, source)
        try:
            papermill.execute_notebook(
                str(source), str(partial), parameters=changed, cwd=str(chapter.parent), kernel_name="python3", progress_bar=True,
                coalesce_streams=True,  # a progress bar's every refresh is one stream output: keep its last state, once
            )
        except papermill.PapermillExecutionError as err:
            if err.ename == "BudgetReached":  # a deadline ended the command between two units: not a failure
                print(f"\n{chapter.name} stopped before its next unit: {err.evalue} (its notebook so far: {partial})", file=sys.stderr)
                raise SystemExit(BUDGET_EXIT) from None
            raise SystemExit(
                f"\n{chapter.name} failed in cell {err.exec_count} ({err.ename}: {err.evalue}).\n"
                f"The partly executed notebook is {partial}; the last complete run's notebook, {executed.name}, is left as it was."
            ) from None
    partial.replace(executed)
    check_units(chapter, profile, params, out_dir / "results.json")
    if refresh:
        check_refresh(profile, changed)
        shutil.copyfile(executed, chapter.with_suffix(".ipynb"))
        print(f"   refreshed {chapter.with_suffix('.ipynb').relative_to(ROOT)}: review it and commit it", flush=True)
    return executed


def _parse_value(text: str):
    """A ``-p`` value as YAML ("3" -> 3, "[2, 4]" -> [2, 4]), and "1e-5" as the float YAML 1.1 would leave a string."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("chapters", nargs="+", type=Path, help="chapter .py files (Jupytext percent format)")
    parser.add_argument("--profile", default="quick", help="; ".join(f"{name}: {what}" for name, what in PROFILES.items()))
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds to run (overrides the profile's)")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="set one parameter (YAML value)")
    parser.add_argument("--plan", action="store_true", help="print every unit to train, its estimated minutes on one H100 (and for "
                        "the cpu profile on the CPU benchmarks/cpu_roofline.py measured) and whether it is done; run nothing")
    parser.add_argument("--from-records", action="store_true", help="render each chapter from the unit records already in its "
                        "units/ folder (merged from shards: lib.shards); refuse, training nothing, if any planned unit has no record")
    parser.add_argument("--refresh-notebooks", action="store_true", help="copy each executed quick run over the committed "
                        "chapters/<chapter>.ipynb, which the regression guard compares with (make notebooks); defaults only")
    args = parser.parse_args(argv)
    overrides = {name: _parse_value(value) for name, value in args.p}
    runs = []
    try:
        for chapter in args.chapters:
            if chapter.suffix != ".py" or not chapter.is_file():
                raise ParameterError(f"{chapter} is not a chapter: give the Jupytext .py file under chapters/")
            runs.append((chapter.resolve(), *resolve_parameters(chapter.resolve(), args.profile, args.seeds, overrides)))
            if args.refresh_notebooks:
                check_refresh(args.profile, runs[-1][2])
            if args.from_records:
                check_records(*runs[-1][:2], args.profile)
    except (ParameterError, RefreshError) as err:
        parser.exit(2, f"error: {err}\nNothing was run.\n")
    if args.plan:
        minutes, units, done, cpu = 0.0, 0, 0, 0.0
        for chapter, params, _ in runs:
            lines, m, n, d, c = plan(chapter, args.profile, params)
            on_cpu = f", {c:.0f} min on the CPU" if c is not None else ""
            print(f"== {chapter.name} [{args.profile}]: {n} units, estimated {m:.1f} min on one H100{on_cpu}, {d} done")
            print("\n".join(lines))
            minutes, units, done, cpu = minutes + m, units + n, done + d, cpu + (c or 0.0)
        print(f"total: {units} units, estimated {minutes:.1f} min on one H100" + (f", {cpu:.0f} min on the CPU" if cpu else "") + f", {done} done")
        return
    for chapter, params, changed in runs:
        print(f"== {chapter.name} [{args.profile}] " + (f"with {changed}" if changed else "with its defaults"), flush=True)
        print(f"   executed notebook: {execute(chapter, args.profile, params, changed, args.refresh_notebooks)}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
