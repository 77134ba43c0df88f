"""The record key: the code digest covers the modules a computation uses, by their code, not their comments."""

import json
import shutil
from pathlib import Path

import pytest

from lib.keys import LIB_DIR, code_digest, lib_imports, source_digest

ROOT = LIB_DIR.parent
EXPERIMENTS = ("embedding_experiment", "soc_experiment", "hierarchy_experiment", "vae_experiment")


@pytest.fixture
def lib(tmp_path) -> Path:
    copy = tmp_path / "lib"
    shutil.copytree(LIB_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def digests(lib: Path) -> dict[str, str]:
    return {e: code_digest(e, lib) for e in EXPERIMENTS}


def test_a_comment_a_docstring_or_a_new_layout_changes_no_digest(lib):
    before = digests(lib)
    for name in ("training.py", "losses.py", "soc.py", "cluster_labelling.py"):
        path = lib / name
        text = path.read_text()
        first_def = text.index("\ndef ")
        edited = text[:first_def] + "\n# a comment\n\n\n" + text[first_def:]  # a comment and blank lines
        edited = edited.replace('"""', '"""Reworded. ', 1)  # the module's docstring
        path.write_text(edited)
    assert digests(lib) == before


def test_a_changed_constant_in_a_loss_changes_the_digest_of_those_that_use_it(lib):
    before = digests(lib)
    path = lib / "losses.py"
    text = path.read_text()
    assert "0.5 * (mu.pow(2)" in text
    path.write_text(text.replace("0.5 * (mu.pow(2)", "0.25 * (mu.pow(2)"))  # the KL term of Eq. (1), halved
    after = digests(lib)
    assert after["vae_experiment"] != before["vae_experiment"]  # the VAE's loss
    assert after["soc_experiment"] == before["soc_experiment"]  # chapter 2 does not use losses.py


def test_a_digest_covers_the_modules_an_experiment_uses_and_no_other(lib):
    before = digests(lib)
    (lib / "models" / "vae.py").write_text((lib / "models" / "vae.py").read_text() + "\nCHANGED = 1\n")
    after = digests(lib)
    assert after["vae_experiment"] != before["vae_experiment"]
    assert after["embedding_experiment"] == before["embedding_experiment"]  # lib.models re-exports the VAE; chapter 1 uses the pyramid
    (lib / "scorecard.py").write_text((lib / "scorecard.py").read_text() + "\nCHANGED = 1\n")  # used by no experiment
    assert digests(lib) == after
    (lib / "training.py").write_text((lib / "training.py").read_text() + "\nCHANGED = 1\n")  # used by every experiment
    assert all(digests(lib)[e] != after[e] for e in EXPERIMENTS)


def test_a_name_imported_from_a_package_leads_to_the_module_that_defines_it():
    used = {p.relative_to(LIB_DIR).as_posix() for p in lib_imports(LIB_DIR / "embedding_experiment.py")}
    assert "models/pyramid.py" in used and "models/vae.py" not in used and "models/__init__.py" not in used
    assert "data/batching.py" in used or "data/loaders.py" in used


def test_the_source_digest_is_the_code_not_the_text(tmp_path):
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x + 1  # one\n')
    b.write_text('def f( x ):\n    return x+1\n')
    c.write_text('def f(x):\n    return x + 2\n')
    assert source_digest(a) == source_digest(b) != source_digest(c)


def test_every_committed_run_made_by_earlier_code_is_marked_stale_on_the_front_page_and_the_status_page():
    """A committed run whose code digest differs from the chapter's current code (its claims were revised
    since, and the run is not yet made again) is never shown as current: the scorecard marks every row
    it supplies with a dagger, and the status page says "stale"."""
    from lib.scorecard import load_all, render, render_status, strongest

    results = load_all(ROOT)
    scorecard, status = render(ROOT), render_status(ROOT)
    stale = []
    for path in sorted(ROOT.glob("results/*/*/results.json")):
        card = json.loads(path.read_text())["run_card"]
        if card["versions"]["lib"] == code_digest(card["experiment"]):
            continue
        chapter, profile = path.parent.name, path.parent.parent.name
        stale.append(f"{profile}/{chapter}")
        status_row = next(line for line in status.splitlines() if f"/chapters/{chapter}>`" in line and f"| {profile} |" in line)
        assert "stale †" in status_row, f"the status page shows {profile}/{chapter} as current: {status_row}"
        for c, p, _ in strongest(results.get(chapter, {})):
            if p == profile:
                row = next(line for line in scorecard.splitlines() if f"| {c['claim']} |" in line)
                assert f"| {profile} †" in row, f"the scorecard shows {c['id']} of stale {profile}/{chapter} unmarked: {row}"
    if stale:
        assert "† made by an earlier version of the chapter's code" in scorecard
