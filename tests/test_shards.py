"""Merging the unit records of shards: copied, kept once when they agree, kept apart when they do not."""

import pytest
import torch

from lib.shards import main, merge, same_result


def record(path, value, machine="a", wall=1.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"accuracy": value, "curve": torch.tensor([0.1, value]), "machine": machine, "wall_time_s": wall}, path)


def test_results_are_compared_without_their_stamps():
    a = {"x": torch.tensor([1.0, 2.0]), "n": [1, {"m": 2}], "machine": "a", "wall_time_s": 3.0}
    assert same_result(a, {**a, "machine": "b", "wall_time_s": 9.0})
    assert not same_result(a, {**a, "x": torch.tensor([1.0, 2.5])})
    assert not same_result(a, {**a, "x": torch.tensor([1.0, 2.0], dtype=torch.float64)})
    assert not same_result(a, {**a, "n": [1, {"m": 3}]}) and not same_result(a, {k: v for k, v in a.items() if k != "n"})


def test_shards_merge_into_one_folder(tmp_path, capsys):
    one, two, dest = tmp_path / "one", tmp_path / "two", tmp_path / "dest"
    record(one / "vae-seed0-abc.pt", 0.5)
    record(one / "annotator-def.pt", 0.9, machine="a")
    record(two / "vae-seed1-abc.pt", 0.6)
    record(two / "annotator-def.pt", 0.9, machine="b", wall=7.0)  # the shared unit, made again by the other shard
    merged = merge(dest, [one, two])
    assert sorted(merged.copied) == ["annotator-def.pt", "vae-seed0-abc.pt", "vae-seed1-abc.pt"]
    assert merged.agreeing == ["annotator-def.pt"] and not merged.differing
    assert torch.load(dest / "annotator-def.pt", weights_only=True)["machine"] == "a"  # the first one is kept
    record(tmp_path / "three" / "annotator-def.pt", 0.8)  # a shared unit whose result differs: kept apart, and the command fails
    with pytest.raises(SystemExit):
        main(["merge", str(dest), str(tmp_path / "three")])
    assert "other results" in capsys.readouterr().out and (dest / "annotator-def.pt.shard-0").is_file()
    assert torch.load(dest / "annotator-def.pt", weights_only=True)["accuracy"] == 0.9


def test_a_missing_shard_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["merge", str(tmp_path / "dest"), str(tmp_path / "nowhere")])
    assert "nowhere" in capsys.readouterr().err


def test_two_shards_merged_render_the_same_page_as_one_process_over_all_seeds(tmp_path):
    """Seed 0 on one "machine", seed 1 on another, merged with lib.shards and rendered with
    --from-records: the same claims, numbers, tables and figures as one process that ran both seeds."""
    import json

    from lib import run as runner

    chapter = runner.ROOT / "chapters" / "04_vae_cluster_labelling.py"
    tiny = {"smoke": True, "n_train": 600, "n_val": 100, "n_annotator": 500, "n_judge": 500, "n_test": 200, "epochs": 2,
            "annotator_epochs": 1, "elbow_sample": 300, "z_dims": [2], "k_max": 8}

    def folder(root):
        return root / "quick" / chapter.stem

    def run(root, seeds, *extra):
        params = {**tiny, "results_root": str(root)}
        runner.main([str(chapter), "--seeds", *map(str, seeds), *extra, *(a for k, v in params.items() for a in ("-p", k, json.dumps(v)))])
        return json.loads((folder(root) / "results.json").read_text())

    run(tmp_path / "a", [0])
    run(tmp_path / "b", [1])
    merged = merge(folder(tmp_path / "page") / "units", [folder(tmp_path / "a") / "units", folder(tmp_path / "b") / "units"])
    assert merged.copied and not merged.differing  # the shared readers, made by both shards, agree
    page = run(tmp_path / "page", [0, 1], "--from-records")
    single = run(tmp_path / "single", [0, 1])
    assert page["run_card"]["units_run"] == 0 and single["run_card"]["units_run"] > 0
    assert [(c["id"], c["ours"], c["verdict"]) for c in page["claims"]] == [(c["id"], c["ours"], c["verdict"]) for c in single["claims"]]
    assert page["tables"] == single["tables"]
    figures = sorted(p.name for p in (folder(tmp_path / "single") / "figures").glob("*.png"))
    assert figures and figures == sorted(p.name for p in (folder(tmp_path / "page") / "figures").glob("*.png"))
    for name in figures:
        assert (folder(tmp_path / "page") / "figures" / name).read_bytes() == (folder(tmp_path / "single") / "figures" / name).read_bytes(), name
