"""The runner refuses bad profiles, names and values before anything runs, and a failing chapter fails."""

import json
import math
from pathlib import Path

import pytest

from lib import run
from lib.budget import QUICK_BOOK_LIMIT_MINUTES, QUICK_DEFAULTS, quick_cost
from lib.run import ParameterError, read_defaults, resolve_parameters
from lib.budget import QUICK_LIMIT_MINUTES

CHAPTER = Path(__file__).resolve().parents[1] / "chapters" / "04_vae_cluster_labelling.py"


def test_defaults_are_read_from_the_parameters_cell():
    defaults = read_defaults(CHAPTER)
    assert defaults["profile"] == "quick" and defaults["beta"] == 5.0 and defaults["gamma"] == 150.0
    assert isinstance(defaults["seeds"], list)


def test_quick_with_defaults_changes_nothing():
    params, changed = resolve_parameters(CHAPTER, "quick", None, {})
    assert changed == {} and params == read_defaults(CHAPTER)


def test_full_profile_and_seeds_resolve():
    params, changed = resolve_parameters(CHAPTER, "full", [3, 4], {})
    assert params["profile"] == "full" and params["seeds"] == [3, 4]
    assert params["n_train"] + params["n_val"] + params["n_annotator"] + params["n_judge"] == 60000


@pytest.mark.parametrize(
    "profile, seeds, overrides, message",
    [
        ("fast", None, {}, "unknown profile 'fast'"),
        ("quick", None, {"gamma_": 1.0}, "no parameter 'gamma_' .*did you mean 'gamma'"),
        ("quick", None, {"epochs": "five"}, "epochs='five' should be of the type"),
        ("quick", None, {"epochs": 2.5}, "epochs=2.5 should be of the type"),
        ("quick", None, {"device": "tpu"}, "device 'tpu' is unknown"),
        ("quick", None, {"z_dims": [2, "x"]}, "z_dims=.* should be of the type"),
        ("quick", None, {"n_train": 0}, "n_train=0 must be an integer of at least 1"),
        ("quick", None, {"budget_ks": ["x"]}, "budget_ks .* must all be integers"),
        ("quick", None, {"budget_ks": [1]}, "budget_ks .* must all be integers of at least 2"),
        ("quick", None, {"n_train": 59000}, "exceeds MNIST's 60000"),
        ("quick", None, {"n_test": 20000}, "exceeds MNIST's 10000 test images"),
        ("quick", None, {"valid_confidence": 1.5}, "valid_confidence=1.5 must be in"),
        ("quick", None, {"k_min": 9, "k_max": 5}, "k_min <= k_max"),
        ("quick", [1, 1], {}, "distinct non-negative"),
        ("quick", None, {"profile": "full"}, "contradicts --profile quick"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(profile, seeds, overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(CHAPTER, profile, seeds, overrides)


def test_the_command_line_refuses_before_running(capsys):
    with pytest.raises(SystemExit) as exit_:
        run.main([str(CHAPTER), "-p", "epohcs", "3"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "did you mean 'epochs'" in err and "Nothing was run" in err


def test_a_file_that_is_not_a_chapter_is_refused(capsys, tmp_path):
    with pytest.raises(SystemExit):
        run.main([str(tmp_path / "missing.py")])
    assert "is not a chapter" in capsys.readouterr().err


FAILING = """# %% tags=["parameters"]
x = 1

# %%
raise RuntimeError(f"broken chapter, x = {x}")
"""


def test_a_failing_chapter_fails_the_run(tmp_path, monkeypatch):
    chapter = tmp_path / "chapters" / "99_broken.py"
    chapter.parent.mkdir()
    chapter.write_text(FAILING)
    monkeypatch.setattr(run, "ROOT", tmp_path)
    params, changed = resolve_parameters(chapter, "quick", None, {"x": 2})
    out = tmp_path / "results" / "quick" / "99_broken"
    out.mkdir(parents=True)
    (out / "99_broken.ipynb").write_text("the last complete run")  # a committed run's page
    with pytest.raises(SystemExit, match=r"99_broken.py failed in cell .*RuntimeError: broken chapter, x = 2"):
        run.execute(chapter, "quick", params, changed)
    assert "RuntimeError" in (out / "99_broken.partial.ipynb").read_text()  # the failed run, for a look
    assert (out / "99_broken.ipynb").read_text() == "the last complete run"  # the committed run is left as it was
    assert not chapter.with_suffix(".ipynb").exists()  # and so is the book's notebook


PROGRESS = """# %% tags=["parameters"]
steps = 40

# %%
import time
from tqdm.auto import tqdm

for _ in tqdm(range(steps), mininterval=0, desc="training"):
    time.sleep(0.005)
print("done")
"""


def test_a_progress_bar_is_kept_as_one_output_in_its_final_state(tmp_path, monkeypatch):
    chapter = tmp_path / "chapters" / "98_progress.py"
    chapter.parent.mkdir()
    chapter.write_text(PROGRESS)
    monkeypatch.setattr(run, "ROOT", tmp_path)
    monkeypatch.setattr(run, "check_units", lambda *args: None)  # the toy chapter has no units
    params, changed = resolve_parameters(chapter, "quick", None, {})
    executed = run.execute(chapter, "quick", params, changed)
    cell = [c for c in json.loads(executed.read_text())["cells"] if "tqdm(" in "".join(c["source"])][0]
    streams = [o for o in cell["outputs"] if o["output_type"] == "stream"]
    assert sorted(o["name"] for o in streams) == ["stderr", "stdout"]  # not one output per refresh
    bar = "".join(next(o for o in streams if o["name"] == "stderr")["text"])
    assert "\r" not in bar and bar.count("training:") == 1 and "40/40" in bar  # its last state, once


CHAPTER1 = CHAPTER.parent / "01_embeddings_extendable_classification.py"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"classes": [0, 1, 1]}, "repeat a class"),
        ({"added_class": 1}, "added_class=1 is already among classes"),
        ({"classes": [0, 1, 12]}, "classes \\[12\\] are unknown"),
        ({"datasets": ["cifar10"]}, "must be distinct names among"),
        ({"backbone": "resnet18"}, "backbone 'resnet18' is unknown"),
        ({"input_size": 16}, "input_size=16 must be at least"),
        ({"straight_schedule": "cosine"}, "straight_schedule='cosine' is unknown"),
        ({"lr_factor": 1.0}, "factor must lie in"),
        ({"classes": [0, "1", 2]}, "should be of the type"),
    ],
)
def test_chapter1_refuses_invalid_choices(overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(CHAPTER1, "quick", None, overrides)


def test_chapter1_full_profile_is_the_papers_setting():
    params, _ = resolve_parameters(CHAPTER1, "full", None, {})
    assert params["backbone"] == "resnet50" and params["input_size"] == 128 and params["lr"] == 1e-4
    assert params["mnist_epochs"] == 4 and params["fashion_epochs"] == 8
    assert params["train_per_class"] == 1700  # cut to the GPU budget: the chapter marks the absolute claim untested


def test_chapter1_cpu_profile_anneals_its_straight_network_on_every_image():
    from lib.run import check_settings

    params, _ = resolve_parameters(CHAPTER1, "cpu", None, {})
    settings = check_settings(CHAPTER1, params)
    assert settings.task.train_per_class >= 6742 and settings.task.test_per_class >= 1135  # MNIST's largest classes: all images
    recipes = {d: settings.straight.recipe(d) for d in ("mnist", "fashion-mnist")}
    assert {r.schedule for r in recipes.values()} == {"onecycle"} and recipes["mnist"].epochs > 4 and recipes["fashion-mnist"].epochs > 8


def test_chapter2_cpu_profile_trains_every_model_of_the_sweep_on_all_of_cifar10():
    from lib.run import check_settings
    from lib.soc_experiment import sweep_models

    chapter2 = CHAPTER.parent / "02_self_organizing_class_embeddings.py"
    params, _ = resolve_parameters(chapter2, "cpu", None, {})
    settings = check_settings(chapter2, params)
    assert (settings.subsets.n_train, settings.subsets.n_test) == (50_000, 10_000)
    assert len(settings.run.seeds) >= 2 and settings.recipe.schedule == "onecycle"
    heads = {(m.head, m.features) for m in sweep_models(settings.sweep.cifar10_features)}
    assert {(h, d) for h in ("soc", "bottleneck") for d in (1, 3, 10)} <= heads
    assert len(settings.run.seeds) >= 5 and settings.recipe.means_lr_scale == 1.0  # the paper's single rate, where the claims are judged
    assert settings.capacity.widths and max(settings.capacity.widths) > settings.encoder_config.width and settings.capacity.features == 3
    assert settings.capacity.arm_features and settings.capacity.arm_means_lr_scale != settings.recipe.means_lr_scale


def test_the_runner_finds_every_chapters_experiment_without_a_table():
    from lib.run import check_settings, experiment_module

    for chapter in sorted(CHAPTER.parent.glob("[0-9]*.py")):
        module = experiment_module(chapter)
        assert module is not None and module.__name__.endswith("_experiment"), chapter.name
        settings = check_settings(chapter, read_defaults(chapter))
        assert settings.run.profile == "quick"


def test_a_chapter_whose_parameters_and_settings_disagree_is_reported(tmp_path, monkeypatch):
    chapter = tmp_path / "chapters" / "98_mismatch.py"
    chapter.parent.mkdir()
    chapter.write_text('# %% tags=["parameters"]\nprofile = "quick"\nextra = 1\n\n# %%\nfrom lib import vae_experiment as experiment\n')
    with pytest.raises(ParameterError, match="does not match lib.vae_experiment.Settings"):
        resolve_parameters(chapter, "quick", None, {})


def test_a_float_in_e_notation_is_read_as_a_float():
    assert run._parse_value("1e-5") == 1e-5 and run._parse_value("[1, 2]") == [1, 2] and run._parse_value("small") == "small"


def test_the_quick_defaults_fit_the_book_s_budget_as_measured():
    assert set(QUICK_DEFAULTS) == {"embedding_experiment", "soc_experiment", "hierarchy_experiment", "vae_experiment"}
    assert all(0 < c.minutes <= QUICK_LIMIT_MINUTES and c.work > 0 for c in QUICK_DEFAULTS.values())
    assert sum(c.minutes for c in QUICK_DEFAULTS.values()) <= QUICK_BOOK_LIMIT_MINUTES


def test_a_chapter_run_through_papermill_refuses_settings_over_the_quick_budget(tmp_path):
    from lib.reporting import ChapterResults
    from lib.run import experiment_module

    experiment, defaults = experiment_module(CHAPTER), read_defaults(CHAPTER)
    cost, n = quick_cost(experiment), 1
    while experiment.work(experiment.Settings(**{**defaults, "seeds": list(range(n))})) / cost.work <= QUICK_LIMIT_MINUTES / cost.minutes:
        n += 1  # the fewest seeds over the budget
    settings = experiment.Settings(**{**defaults, "seeds": list(range(n)), "results_root": str(tmp_path)})
    with pytest.raises(ValueError, match="more than the .* that fits the quick profile's 3 minutes"):
        ChapterResults(CHAPTER.stem, settings, experiment)
    assert not any(tmp_path.iterdir())  # refused before it wrote anything


@pytest.mark.parametrize("chapter", sorted(CHAPTER.parent.glob("[0-9]*.py")), ids=lambda p: p.stem[:2])
def test_the_quick_profile_is_bounded_whatever_a_reader_picks(chapter):
    from lib.run import experiment_module

    experiment, defaults = experiment_module(chapter), read_defaults(chapter)
    cost = quick_cost(experiment)
    assert experiment.work(experiment.Settings(**defaults)) == pytest.approx(cost.work, rel=1e-3), (
        "the chapter's quick defaults changed: update lib.budget.QUICK_DEFAULTS (python benchmarks/quick_book.py)")
    with pytest.raises(ParameterError, match="more than the .* that fits the quick profile's 3 minutes"):
        resolve_parameters(chapter, "quick", list(range(10)), {})  # ten seeds
    for n in range(1, 8):  # refused exactly when the seeds' work over the defaults' exceeds 3 minutes over the defaults' minutes
        try:
            work = experiment.work(experiment.Settings(**{**defaults, "seeds": list(range(n))}))
        except ValueError:  # the experiment's own, older and looser bound (see lib.budget) refuses it already
            work = math.inf
        if work / cost.work > QUICK_LIMIT_MINUTES / cost.minutes:
            with pytest.raises(ParameterError, match="that fits the quick profile's 3 minutes"):
                resolve_parameters(chapter, "quick", list(range(n)), {})
        else:
            resolve_parameters(chapter, "quick", list(range(n)), {})
    for profile_file in (chapter.parent / "profiles").glob(f"{chapter.stem}.*.yaml"):  # other profiles are not bounded here
        resolve_parameters(chapter, profile_file.suffixes[0][1:], list(range(10)), {})


@pytest.mark.parametrize("chapter", sorted(CHAPTER.parent.glob("0*.py")), ids=lambda p: p.stem[:2])
def test_papermill_reads_every_parameter_with_its_help(chapter, caplog):
    """``papermill --help-notebook`` and papermill's own parameter check see what the runner sees."""
    import jupytext
    from papermill.translators import PythonTranslator

    cell = next(c for c in jupytext.read(chapter).cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level("WARNING", logger="papermill"):
        found = PythonTranslator.inspect(cell)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert [p.name for p in found] == list(read_defaults(chapter))
    assert all(p.help for p in found), [p.name for p in found if not p.help]


@pytest.mark.parametrize("saved", sorted(CHAPTER.parents[1].glob("results/[cf]*/*/results.json")), ids=lambda p: f"{p.parts[-3]}-{p.parts[-2][:2]}")
def test_every_committed_run_has_the_settings_its_profile_gives_today(saved):
    """A profile that leaves a parameter to the chapter's quick default follows it when the default
    changes: a committed cpu or full run would then no longer be what its profile runs. Only the
    arithmetic (:data:`NUMERICS`) may differ. A run made by earlier code than the chapter's (its
    code digest differs) is stale whatever its settings: the scorecard and the status page mark it †
    until the profile is run again, so its settings are not compared here."""
    import json

    from lib.keys import code_digest, plain
    from lib.run import experiment_module

    profile, chapter = saved.parts[-3], CHAPTER.parent / f"{saved.parts[-2]}.py"
    params, _ = resolve_parameters(chapter, profile, None, {})
    card = json.loads(saved.read_text())["run_card"]
    if card["versions"]["lib"] != code_digest(card["experiment"]):
        pytest.skip(f"{saved} is stale (made by earlier code; marked † on the scorecard): run the profile again")
    today = plain(experiment_module(chapter).Settings(**params))
    made = {k: v for k, v in card["settings"].items() if k not in NUMERICS}
    assert made == {k: v for k, v in today.items() if k not in NUMERICS}, (
        f"{saved} was made with other settings than chapters/profiles/{chapter.stem}.{profile}.yaml now gives: pin them in the profile")


# The arithmetic a run trained with, which its run card states ("numerics"): bf16 autocast or fp32, and the memory
# layout. A committed run made in fp32 stands for a profile that now asks the bf16 fast path, because paired
# pilots showed the fast path moves no main model by more than a change of seed (each cpu profile's header);
# every other setting must be the profile's.
NUMERICS = ("amp", "channels_last")


def test_refreshing_the_committed_notebook_takes_the_quick_defaults_only(capsys, monkeypatch):
    monkeypatch.delenv("BOOK_RESULTS_ROOT", raising=False)
    for argv, message in (([str(CHAPTER), "--refresh-notebooks", "-p", "epochs", "3"], "with its defaults|its defaults|quick profile with"),
                          ([str(CHAPTER), "--refresh-notebooks", "--profile", "full"], "not --profile full")):
        with pytest.raises(SystemExit) as exit_:
            run.main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "Nothing was run" in err and __import__("re").search(message, err), err
    monkeypatch.setenv("BOOK_RESULTS_ROOT", "/tmp/elsewhere")
    with pytest.raises(SystemExit):
        run.main([str(CHAPTER), "--refresh-notebooks"])
    assert "BOOK_RESULTS_ROOT" in capsys.readouterr().err


CHAPTERS = {p.stem[:2]: p for p in (Path(__file__).resolve().parents[1] / "chapters").glob("[0-9]*.py")}


@pytest.mark.parametrize("chapter, overrides, message", [
    ("01", {"classes": [0, 1, 1]}, "repeat a class"),
    ("01", {"added_class": 1}, "already among classes"),
    ("01", {"classes": [0, 1, 12]}, r"classes \[12\] are unknown"),
    ("02", {"held_out_class": 12}, "must be a CIFAR-10 label"),
    ("02", {"pair_classes": [1, 1]}, "two different CIFAR-10 labels"),
    ("02", {"ood_features": 7}, "must be one of cifar10_features"),
    ("03", {"imbalance": "heavy"}, "imbalance 'heavy' is unknown"),
    ("03", {"unseen_subclasses": 60}, "between 2 and 49"),
    ("04", {"z_dims": [0]}, "distinct integers of at least 1"),
])
def test_an_invalid_choice_of_any_chapter_is_refused_before_anything_runs(chapter, overrides, message):
    with pytest.raises(ParameterError, match=message):
        resolve_parameters(CHAPTERS[chapter], "quick", None, overrides)


def test_a_novel_sub_class_outside_the_stand_in_is_refused_before_anything_runs():
    from lib.data import DataError
    from lib.data.loaders import tiny_imagenet_classes

    try:
        tiny_imagenet_classes()
    except DataError:
        pytest.skip("no copy of Tiny-ImageNet's animals here: the name is checked against its classes.tsv")
    with pytest.raises(ParameterError, match="not one of Tiny-ImageNet's 59 animal classes .did you mean 'Labrador retriever'"):
        resolve_parameters(CHAPTERS["03"], "quick", None, {"novel_subclass": "labrador"})
    resolve_parameters(CHAPTERS["03"], "quick", None, {"novel_subclass": "goose"})


@pytest.mark.parametrize("chapter", sorted(CHAPTERS.values()), ids=lambda p: p.stem[:2])
def test_the_parameters_cell_is_the_settings_fields_with_their_defaults(chapter):
    """Every cell parameter is a field of the chapter's Settings and every field a cell parameter, in
    the same order; the cell's defaults are the dataclass's (the quick profile)."""
    from lib.keys import plain
    from lib.run import experiment_module

    settings_class = experiment_module(chapter).Settings
    defaults = read_defaults(chapter)
    assert list(defaults) == list(settings_class.parameters())
    assert plain(settings_class(**defaults)) == plain(settings_class())
    assert settings_class.of(defaults) == settings_class()
    with pytest.raises(ValueError, match="does not set"):
        settings_class.of({k: v for k, v in defaults.items() if k != "seeds"})


def test_rendering_from_records_refuses_when_a_planned_unit_has_none(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOOK_RESULTS_ROOT", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        run.main([str(run.ROOT / "chapters" / "04_vae_cluster_labelling.py"), "--from-records"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "have no record" in err and "lib.shards merge" in err and "Nothing was run" in err
