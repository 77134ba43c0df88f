"""Chapters: paired files in step, executed notebooks clean, environment files in step."""

from pathlib import Path

import jupytext
import nbformat
import pytest
import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9]*.py"))


def cells(nb):
    return [(c.cell_type, c.source.strip()) for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def test_there_are_chapters():
    assert CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_py_and_ipynb_are_in_step(chapter):
    notebook = chapter.with_suffix(".ipynb")
    assert notebook.is_file(), f"{notebook.name} is missing: run `python -m lib.run {chapter.relative_to(ROOT)}`"
    assert cells(jupytext.read(chapter)) == cells(jupytext.read(notebook)), (
        f"{chapter.name} and {notebook.name} have drifted apart: run `python -m lib.run {chapter.relative_to(ROOT)}` "
        "to re-execute, or `jupytext --sync` after editing"
    )


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_the_committed_notebook_is_executed_and_clean(chapter):
    nb = nbformat.read(chapter.with_suffix(".ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell has run"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"], "no cell raised"
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for c in code for o in c.outputs), "it has figures"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_profile_file_is_valid(chapter):
    from lib.run import resolve_parameters

    for profile_file in (ROOT / "chapters" / "profiles").glob(f"{chapter.stem}.*.yaml"):
        resolve_parameters(chapter, profile_file.suffixes[0][1:], None, {})


def requirement_names(reqs):
    return {r.replace(" ", "") for r in reqs}


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = requirement_names(project["dependencies"] + project["optional-dependencies"]["test"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = requirement_names(p for p in pip if not p.startswith("-e"))
    assert listed == wanted, f"environment.yml and pyproject.toml differ: only in environment.yml {listed - wanted}, only in pyproject {wanted - listed}"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pinned, required = version(python.split("=")[-1]), version(project["requires-python"])
    assert pinned >= required, f"environment.yml pins {python}, below pyproject's requires-python {project['requires-python']}"


def version(text: str) -> tuple[int, ...]:
    """A version's numbers, to compare as numbers: "3.10" is above "3.9", which a string comparison denies."""
    import re

    return tuple(int(part) for part in re.findall(r"\d+", text))


def test_versions_are_compared_as_numbers_not_as_strings():
    assert version(">=3.10") == (3, 10) and version("3.11") == (3, 11)
    assert version("3.10") > version("3.9") and not "3.10" > "3.9"  # the string comparison gets this wrong
    assert version("3.9") < version(">=3.10")


def test_toc_lists_every_chapter():
    toc = (ROOT / "_toc.yml").read_text()
    for chapter in CHAPTERS:
        assert f"chapters/{chapter.stem}" in toc
