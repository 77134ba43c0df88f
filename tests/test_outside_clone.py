"""A chapter outside a clone of the book (Colab, a notebook downloaded from a page): its first cell, tagged
``outside-clone``, clones the book at the commit the page was built from, installs it and goes on in its
``chapters/`` folder; inside a clone it does nothing. Checked offline: the "repository" is this clone's
path, and pip installs into a virtual environment of its own with no index, the book's pinned packages
already visible to it."""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import jupytext
import pytest

from lib import book

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.py"))


def guard_source(chapter: Path) -> str:
    cells = [c for c in jupytext.read(chapter).cells if book.GUARD_TAG in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{chapter.name} must have one cell tagged {book.GUARD_TAG!r}, has {len(cells)}"
    return cells[0].source


def test_every_chapter_starts_with_the_same_guard_cell():
    for chapter in CHAPTERS:
        code = [c for c in jupytext.read(chapter).cells if c.cell_type == "code"]
        assert book.GUARD_TAG in code[0].metadata.get("tags", []), f"{chapter.name}: the guard is not the first code cell"
    assert len({guard_source(c) for c in CHAPTERS}) == 1, "the chapters' guard cells differ"


def test_inside_a_clone_the_guard_does_nothing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the guard ran {args} inside a clone")

    monkeypatch.chdir(ROOT / "chapters")
    monkeypatch.setattr(subprocess, "run", refuse)
    before = list(sys.path)
    exec(guard_source(CHAPTERS[0]), {})
    assert Path.cwd() == ROOT / "chapters" and sys.path == before


def test_outside_a_clone_an_unstamped_notebook_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOOK_REPOSITORY", raising=False)
    with pytest.raises(RuntimeError, match="set BOOK_REPOSITORY to the repository's URL"):
        exec(guard_source(CHAPTERS[0]), {})


def test_stamping_names_the_repository_and_commit_in_the_guard_only():
    committed = (ROOT / "chapters" / "04_vae_cluster_labelling.ipynb").read_text()
    stamped = json.loads(book.stamp(committed, "https://example.org/owner/book", "0123abcd"))
    sources = ["".join(c["source"]) for c in stamped["cells"]]
    guard = [s for s, c in zip(sources, stamped["cells"]) if book.GUARD_TAG in c["metadata"].get("tags", [])]
    assert len(guard) == 1
    assert 'os.environ.get("BOOK_REPOSITORY", "https://example.org/owner/book")' in guard[0]
    assert 'os.environ.get("BOOK_COMMIT", "0123abcd")' in guard[0]
    others = ["".join(c["source"]) for c in json.loads(committed)["cells"] if book.GUARD_TAG not in c["metadata"].get("tags", [])]
    assert [s for s, c in zip(sources, stamped["cells"]) if book.GUARD_TAG not in c["metadata"].get("tags", [])] == others


@pytest.mark.parametrize("remote, url", [
    ("git@github.com:owner/book.git", "https://github.com/owner/book"),
    ("https://github.com/owner/book.git\n", "https://github.com/owner/book"),
    ("https://gitlab.example.org/group/book/", "https://gitlab.example.org/group/book"),
    ("/work/main", None),
    ("file:///srv/book.git", None),
])
def test_a_remote_becomes_a_public_address_or_nothing(remote, url):
    assert book.public_url(remote) == url


def test_the_launch_configuration_adds_the_buttons_and_keeps_the_rest():
    config = (ROOT / "_config.yml").read_text()
    import yaml

    before, after = yaml.safe_load(config), yaml.safe_load(book.launch_config(config, "https://github.com/owner/book", "main"))
    assert after["repository"] == {"url": "https://github.com/owner/book", "branch": "main", "path_to_book": ""}
    assert after["html"]["use_repository_button"] and after["html"]["use_issues_button"]
    assert after["launch_buttons"]["colab_url"].startswith("https://colab.") and "binderhub_url" in after["launch_buttons"]
    assert {k: v for k, v in after.items() if k not in ("repository", "html", "launch_buttons")} == \
        {k: v for k, v in before.items() if k not in ("repository", "html", "launch_buttons")}


def test_a_stamped_chapter_runs_its_first_cells_outside_the_clone(tmp_path):
    commit = book.head_commit(ROOT)
    if commit is None:
        pytest.skip("not a git checkout: there is no commit to clone")
    committed = (ROOT / "chapters" / "04_vae_cluster_labelling.ipynb").read_text()
    cells = json.loads(book.stamp(committed, str(ROOT), commit))["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    first = code[: next(i for i, s in enumerate(code) if "run_this_chapter(" in s) + 1]  # the guard and the chapter's first cell
    script = tmp_path / "outside" / "first_cells.py"
    script.parent.mkdir()
    script.write_text("\n\n".join(first) + "\n\nimport lib, importlib.metadata\n"
                      "print('cwd', os.getcwd()); print('lib', lib.__file__)\n"
                      "print('installed', importlib.metadata.version('beyond-softmax-book'))\n")
    environment = tmp_path / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": sysconfig.get_paths()["purelib"],  # the pinned packages, found by pip
           "BOOK_PIP_OPTIONS": "--no-index --no-build-isolation", "BOOK_HOME": str(home / "book")}
    env.pop("BOOK_REPOSITORY", None), env.pop("BOOK_COMMIT", None)
    done = subprocess.run([str(python), str(script)], cwd=script.parent, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the first cells failed outside the clone:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    clone = home / "book"
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.split(" ", 1)[0] in ("cwd", "lib", "installed"))
    assert Path(lines["cwd"]) == clone / "chapters"
    assert Path(lines["lib"]).is_relative_to(clone)
    assert lines["installed"]
    checked_out = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert checked_out == commit
    own = {k: v for k, v in env.items() if k != "PYTHONPATH"}  # the environment's own packages only
    shown = subprocess.run([str(python), "-m", "pip", "show", "beyond-softmax-book"], env=own, capture_output=True, text=True).stdout
    assert str(clone) in shown, f"the book is not installed from its clone:\n{shown}"
