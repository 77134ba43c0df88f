"""The book's build stages its sources and never rewrites the committed notebooks."""

import json
import subprocess
from pathlib import Path

import pytest

from lib import book

ROOT = Path(__file__).resolve().parents[1]


def fake_repository(tmp_path: Path, fresh: bool) -> Path:
    """A repository's shape: pages, configuration, two chapters with committed notebooks, and fresh runs
    of them when ``fresh``."""
    root = tmp_path / "repo"
    (root / "chapters").mkdir(parents=True)
    for name in (*book.PAGES, "_toc.yml", "_config.yml", "references.bib"):
        (root / name).write_text(name)
    for name in ("_ext", "_static", "_generated"):
        (root / name).mkdir()
    for chapter in ("01_a", "02_b"):
        (root / "chapters" / f"{chapter}.py").write_text("# %%\n")
        (root / "chapters" / f"{chapter}.ipynb").write_text(json.dumps({"committed": chapter}))
        if fresh:
            run = root / "results" / "quick" / chapter
            run.mkdir(parents=True)
            (run / f"{chapter}.ipynb").write_text(json.dumps({"fresh": chapter}))
    return root


@pytest.mark.parametrize("notebooks", book.NOTEBOOKS)
def test_staging_copies_the_chosen_notebooks_and_links_the_rest(tmp_path, notebooks):
    root = fake_repository(tmp_path, fresh=True)
    committed = {p: p.read_bytes() for p in (root / "chapters").iterdir()}
    target = book.stage(tmp_path / "stage", notebooks, root)
    shown = {p.stem: json.loads(p.read_text()) for p in (target / "chapters").glob("*.ipynb")}
    assert shown == {c: {notebooks: c} for c in ("01_a", "02_b")}
    assert not list((target / "chapters").glob("*.py"))  # the build renders notebooks only
    assert (target / "intro.md").is_symlink() and (target / "_generated").resolve() == root / "_generated"
    assert {p: p.read_bytes() for p in (root / "chapters").iterdir()} == committed  # nothing of the repository changed


def test_a_missing_fresh_run_is_named_before_anything_is_removed(tmp_path):
    root = fake_repository(tmp_path, fresh=False)
    target = tmp_path / "stage"
    (target / "keep").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"01_a\.ipynb is missing.*python -m lib.run chapters/01_a\.py"):
        book.stage(target, "fresh", root)
    assert (target / "keep").is_dir()
    with pytest.raises(ValueError, match="notebooks='stale' is unknown"):
        book.notebook("01_a", "stale", root)


def test_the_book_build_leaves_the_tracked_files_as_they_are():
    """What ``make book`` writes (its runs and its staged sources) is neither tracked nor shown by ``git status``."""
    tracked = subprocess.run(["git", "ls-files", "_build", "results/quick"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert tracked.stdout == ""
    ignored = subprocess.run(["git", "check-ignore", "_build/source/chapters/x.ipynb", "results/quick/x/x.ipynb"], cwd=ROOT,
                             capture_output=True, text=True)
    assert len(ignored.stdout.split()) == 2
