"""Units: a record is written once and reused, two invocations' records merge, a damaged one is made again, plans."""

import shutil
import time

import pytest
import torch

from lib.training import Checkpoint, Recipe
from lib.units import DEADLINE_ENV, BudgetReached, Records, Unit, Work, forward_flops, plan_lines

WORK = Work(train_images=1000, forward_images=100, flops=1e6, steps=10)


def unit(name: str, value: int = 1) -> Unit:
    return Unit(name, (Recipe(epochs=1, lr=1.0, batch_size=8), value), f"the unit {name}", WORK)


def counting(result: dict):
    calls = []

    def compute(checkpoint: Checkpoint) -> dict:
        calls.append(checkpoint)
        return result

    return compute, calls


def test_a_record_is_computed_once_and_then_read(tmp_path):
    records = Records(tmp_path / "units", code="abc", checkpoints=tmp_path / "checkpoints", stamp={"git": "c0ffee", "machine": "here"})
    compute, calls = counting({"accuracy": 0.5, "curve": torch.arange(3.0)})
    first = records.run(unit("a"), compute)
    again = records.run(unit("a"), compute)
    assert len(calls) == 1 and records.computed == ["a"] and records.loaded == ["a"]
    assert again["accuracy"] == first["accuracy"] == 0.5 and torch.equal(again["curve"], torch.arange(3.0))
    assert again["unit"] == "a" and again["wall_time_s"] >= 0 and again["git"] == "c0ffee" and again["machine"] == "here"
    summary = records.summary()
    assert {k: summary[k] for k in ("units_run", "units_from_records", "units_resumed")} == {"units_run": 1, "units_from_records": 1, "units_resumed": 0}
    assert summary["units_wall_time_s"] == pytest.approx(2 * first["wall_time_s"], abs=0.1)
    assert summary["units_made_by"] == [{"git": "c0ffee", "machine": "here"}]


def test_other_settings_or_other_code_make_another_record(tmp_path):
    records = Records(tmp_path, code="abc", checkpoints=None)
    compute, calls = counting({"x": 1})
    records.run(unit("a", 1), compute)
    records.run(unit("a", 2), compute)  # another value in the key
    Records(tmp_path, code="abd", checkpoints=None).run(unit("a", 1), compute)  # other code
    assert len(calls) == 3 and len(list(tmp_path.glob("a-*.pt"))) == 3


def test_records_of_two_invocations_merge_into_one_folder(tmp_path):
    one = Records(tmp_path / "machine1", "abc", None, stamp={"git": "c0ffee", "machine": "gpu"})
    two = Records(tmp_path / "machine2", "abc", None, stamp={"git": "c0ffee", "machine": "cpu"})
    one.run(unit("a"), counting({"who": 1})[0])
    two.run(unit("b"), counting({"who": 2})[0])
    merged = tmp_path / "merged"
    for folder in (tmp_path / "machine1", tmp_path / "machine2"):
        shutil.copytree(folder, merged, dirs_exist_ok=True)
    records = Records(merged, "abc", None)
    compute, calls = counting({"who": 3})
    assert records.run(unit("a"), compute)["who"] == 1 and records.run(unit("b"), compute)["who"] == 2 and not calls
    assert all(records.done(u) for u in (unit("a"), unit("b")))
    assert [m["machine"] for m in records.summary()["units_made_by"]] == ["cpu", "gpu"]  # the run card names both


def test_a_damaged_record_is_made_again(tmp_path, capsys):
    records = Records(tmp_path, "abc", None)
    records.run(unit("a"), counting({"x": 1})[0])
    records.path(unit("a")).write_bytes(b"damaged")
    compute, calls = counting({"x": 2})
    assert records.run(unit("a"), compute)["x"] == 2 and len(calls) == 1
    assert "unreadable" in capsys.readouterr().out


def test_a_finished_unit_removes_its_checkpoints_and_their_parts(tmp_path):
    records = Records(tmp_path / "units", "abc", tmp_path / "checkpoints")

    def compute(checkpoint: Checkpoint) -> dict:
        for c in (checkpoint, checkpoint.part("first"), checkpoint.part("second")):
            c.save({"epoch": 1}, final=True, model=torch.nn.Linear(2, 2))
        assert len(list((tmp_path / "checkpoints").iterdir())) == 3
        return {"x": 1}

    records.run(unit("a"), compute)
    assert not list((tmp_path / "checkpoints").iterdir())


def test_a_record_holds_only_tensors_and_plain_containers(tmp_path):
    with pytest.raises(TypeError, match="record of a"):
        Records(tmp_path, "abc", None).run(unit("a"), lambda checkpoint: {"recipe": Recipe(epochs=1, lr=1.0, batch_size=8)})


def test_no_unit_starts_that_would_not_end_before_the_deadline(tmp_path, monkeypatch):
    records = Records(tmp_path, "abc", None)
    long = Unit("long", (1,), "a long unit", Work(train_images=10**12, forward_images=0, flops=1e9, steps=0))
    monkeypatch.setenv(DEADLINE_ENV, str(time.time() + 60))
    compute, calls = counting({"x": 1})
    with pytest.raises(BudgetReached, match="run the same command again"):
        records.run(long, compute)
    assert records.run(unit("short"), compute)["x"] == 1 and len(calls) == 1  # a short one still fits


def test_work_is_the_arithmetic_over_the_rate_plus_the_steps():
    from lib.units import H100_TRAINING_FLOPS, STEP_SECONDS

    w = Work(train_images=1000, forward_images=500, flops=2e9, steps=100, cpu_seconds=6.0)
    assert w.h100_minutes() == pytest.approx(((3 * 1000 + 500) * 2e9 / H100_TRAINING_FLOPS + 100 * STEP_SECONDS + 6.0) / 60)


def test_forward_flops_counts_a_linear_layer_by_hand():
    assert forward_flops(lambda: torch.nn.Linear(10, 4), (10,), key="linear-10-4") == 2 * 10 * 4  # a multiply and an add per weight


def test_the_plan_says_what_is_done_and_adds_up(tmp_path):
    records = Records(tmp_path, "abc", None)
    records.run(unit("a"), counting({"x": 1})[0])
    lines = plan_lines([unit("a"), unit("b")], records)
    assert lines[0].startswith("done") and lines[1].startswith("todo") and " a " in lines[0]
    assert lines[-1] == f"total: 2 units, estimated {2 * WORK.h100_minutes():.1f} min on one H100, 1 done"


@pytest.mark.parametrize("chapter", ["01_embeddings_extendable_classification", "02_self_organizing_class_embeddings",
                                     "03_hierarchical_transfer_learning", "04_vae_cluster_labelling"])
def test_every_chapter_plans_its_units_with_unique_names(chapter):
    from pathlib import Path

    from lib.run import ROOT, plan, resolve_parameters

    params, _ = resolve_parameters(ROOT / "chapters" / f"{chapter}.py", "quick", None, {"results_root": str(Path("/nonexistent"))})
    lines, minutes, n, done, cpu = plan(ROOT / "chapters" / f"{chapter}.py", "quick", params)
    names = [line.split()[3] for line in lines]
    assert len(names) == n == len(set(names)) and done == 0 and 0 < minutes < 30 and cpu is None  # quick: no CPU estimate


def test_cpu_minutes_are_the_images_over_the_measured_rate_and_the_plan_adds_them(tmp_path):
    w = Work(train_images=1000, forward_images=500, flops=2e9, steps=100, cpu_seconds=6.0)
    assert w.cpu_minutes(1e11) == pytest.approx(((3 * 1000 + 500) * 2e9 / 1e11 + 6.0) / 60)  # no per-step overhead on a CPU
    lines = plan_lines([unit("a"), unit("b")], Records(tmp_path, "abc", None), cpu_rate=1e11)
    assert f"{WORK.cpu_minutes(1e11):6.1f} min CPU" in lines[0]
    assert lines[-1].endswith(f", {2 * WORK.cpu_minutes(1e11):.0f} min on the CPU, 0 done")


def test_the_cpu_rate_is_the_benchmarks_and_fp32_where_the_cpu_has_no_bf16(tmp_path):
    import json

    from lib.units import cpu_training_rate

    path = tmp_path / "roofline.json"
    measured = {"cpu": "some CPU", "date": "2026-12-06", "native_bf16": True, "training_flops_per_s": {"2": {"fp32": 6e10, "fast": 2e11, "how": "two single-thread workers"}}}
    path.write_text(json.dumps(measured))
    assert cpu_training_rate(2, fast=True, path=path)[0] == 2e11 and cpu_training_rate(2, fast=False, path=path)[0] == 6e10
    assert "as two single-thread workers, measured on some CPU" in cpu_training_rate(2, fast=True, path=path)[1]
    assert cpu_training_rate(4, fast=True, path=path) is None and cpu_training_rate(2, True, path=tmp_path / "absent.json") is None
    path.write_text(json.dumps(measured | {"native_bf16": False}))  # measured where bf16 is emulated: the fast path ran fp32
    assert cpu_training_rate(2, fast=True, path=path)[0] == 6e10


def test_the_cpu_profiles_plan_prints_minutes_on_the_cpu():
    from pathlib import Path

    from lib.run import ROOT, plan, resolve_parameters
    from lib.units import ROOFLINE

    chapter = ROOT / "chapters" / "02_self_organizing_class_embeddings.py"
    params, _ = resolve_parameters(chapter, "cpu", None, {"results_root": str(Path("/nonexistent"))})
    lines, minutes, n, done, cpu = plan(chapter, "cpu", params)
    assert ROOFLINE.is_file(), "benchmarks/results/cpu_roofline.json is committed: python benchmarks/cpu_roofline.py"
    assert lines[0].startswith("CPU minutes: ") and cpu > minutes > 0  # a 2-core CPU is slower than an H100
    assert all(" min CPU " in line for line in lines[1:])


def test_a_chapter_renders_from_records_that_two_invocations_made(tmp_path):
    """Seed 0 on one "machine", seed 1 on another; their records copied together; the run with both
    seeds trains nothing and renders the chapter."""
    import json

    from lib.run import ROOT, execute, planned_units, resolve_parameters

    chapter = ROOT / "chapters" / "04_vae_cluster_labelling.py"
    tiny = {"smoke": True, "n_train": 600, "n_val": 100, "n_annotator": 500, "n_judge": 500, "n_test": 200, "epochs": 2,
            "annotator_epochs": 1, "elbow_sample": 300, "z_dims": [2], "k_max": 8}

    def run(root, seeds):
        params, changed = resolve_parameters(chapter, "quick", seeds, {**tiny, "results_root": str(root)})
        execute(chapter, "quick", params, changed)
        return json.loads((root / "quick" / chapter.stem / "results.json").read_text())["run_card"]

    one, two = run(tmp_path / "one", [0]), run(tmp_path / "two", [1])
    assert one["units_run"] == two["units_run"] > 0
    merged = tmp_path / "merged" / "quick" / chapter.stem / "units"
    for part in ("one", "two"):
        shutil.copytree(tmp_path / part / "quick" / chapter.stem / "units", merged, dirs_exist_ok=True)
    card = run(tmp_path / "merged", [0, 1])
    assert card["units_run"] == 0 and card["units_from_records"] == 2 * one["units_run"] - 2  # the annotator and the judge are shared
    assert card["seeds"] == [0, 1]
    # the units it rendered are exactly those --plan lists (lib.run checks it after every run)
    params, _ = resolve_parameters(chapter, "quick", [0, 1], {**tiny, "results_root": str(tmp_path / "merged")})
    assert set(card["units"]) == {u.name for u in planned_units(chapter, "quick", params)[0]}

    # a change of the code's key: the records, renamed to another digest, are carried back by lib.migrate
    from lib.migrate import migrate, migrations

    run_dir = tmp_path / "merged" / "quick" / chapter.stem
    for record in (run_dir / "units").glob("*.pt"):
        record.rename(record.with_name(record.name.rsplit("-", 1)[0] + "-0123456789ab.pt"))
    renamed, problems = migrate(run_dir)
    assert problems == [] and renamed >= len(card["units"])
    assert migrations(run_dir) == ([], [])
    assert run(tmp_path / "merged", [0, 1])["units_run"] == 0  # nothing trained again
    current = next((run_dir / "units").glob(f"{card['units'][0]}-*.pt"))
    current.rename(current.with_name(f"{card['units'][0]}-0123456789ab.pt"))
    (run_dir / "units" / f"{card['units'][0]}-ffffffffffff.pt").write_bytes(b"")  # two old records of one unit: which one?
    moves, problems = migrations(run_dir)
    assert moves == [] and len(problems) == 1 and problems[0].startswith(f"{card['units'][0]}: 2 records")
