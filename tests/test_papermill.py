"""A chapter run through plain papermill with a profile file: the way the README tells readers to
run a chapter without the book's runner. The profile file's ``profile:`` must reach the run card."""

import json
import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "04_vae_cluster_labelling"
TINY = {"seeds": [0], "smoke": True, "n_train": 1000, "n_val": 100, "n_annotator": 300, "n_judge": 300, "n_test": 300, "epochs": 2,
        "annotator_epochs": 1, "elbow_sample": 300, "z_dims": [10], "budget_ks": [20], "paper_k": 20, "oracle": False,
        "beta_control": 0.0}


def test_a_chapter_runs_through_papermill_with_a_profile_file(tmp_path):
    import papermill

    profile_file = ROOT / "chapters" / "profiles" / f"{CHAPTER}.full.yaml"
    parameters = {**yaml.safe_load(profile_file.read_text()), **TINY, "results_root": str(tmp_path)}
    papermill.execute_notebook(str(ROOT / "chapters" / f"{CHAPTER}.ipynb"), str(tmp_path / "executed.ipynb"), parameters=parameters,
                               cwd=str(ROOT / "chapters"), kernel_name="python3", progress_bar=False)
    root = Path(os.environ.get("BOOK_RESULTS_ROOT") or tmp_path)  # the test session sends every run's results there
    saved = json.loads((root / "full" / CHAPTER / "results.json").read_text())
    card = saved["run_card"]
    assert card["profile"] == "full" and card["settings"]["profile"] == "full"  # labelled by the profile file, not "quick"
    assert card["settings"]["n_train"] == 1000 and card["seeds"] == [0]  # the overrides reached the chapter
    assert saved["claims"] and all(c["profile"] == "full" for c in saved["claims"])
