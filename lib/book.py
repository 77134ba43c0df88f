"""Build the book's pages without touching the repository's tracked files.

Jupyter Book renders notebooks as they are (it executes nothing). Which executed notebooks it renders
is a choice:

* ``fresh`` (``make book``): the notebooks ``python -m lib.run`` has just executed into
  ``results/quick/<chapter>/`` (an ignored folder), so every table and figure of the built book
  comes from this machine's run;
* ``committed`` (the browser test): ``chapters/<chapter>.ipynb``, the quick runs committed with the
  book, which the regression guard compares every new run with.

Either way the book's sources are staged under ``_build/source/`` (links to the Markdown pages, the
configuration and ``_generated/``, and copies of the chosen notebooks under ``chapters/``) and built
from there, so a build never rewrites ``chapters/*.ipynb``. Refreshing those is a deliberate step:
``make notebooks`` (``python -m lib.run ... --refresh-notebooks``), then a commit.

    python -m lib.book                       # fresh notebooks, HTML in _build/html
    python -m lib.book --notebooks committed --out /tmp/book
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from .provenance import ROOT

PAGES = ("intro.md", "scorecard.md", "status.md", "reference.md", "bibliography.md")
CONFIG = ("_toc.yml", "_config.yml", "_ext", "_static", "references.bib", "_generated")
NOTEBOOKS = ("fresh", "committed")


def chapters(root: Path = ROOT) -> list[str]:
    """The chapters' names (``NN_title``), from their Jupytext sources."""
    return sorted(p.stem for p in (root / "chapters").glob("[0-9]*.py"))


def notebook(chapter: str, notebooks: str, root: Path = ROOT) -> Path:
    """The executed notebook of ``chapter`` that a build of kind ``notebooks`` renders."""
    if notebooks not in NOTEBOOKS:
        raise ValueError(f"notebooks={notebooks!r} is unknown; choose one of {list(NOTEBOOKS)}")
    path = (root / "results" / "quick" / chapter / f"{chapter}.ipynb") if notebooks == "fresh" else (root / "chapters" / f"{chapter}.ipynb")
    if not path.is_file():
        how = f"python -m lib.run chapters/{chapter}.py" if notebooks == "fresh" else "git checkout -- chapters/"
        raise FileNotFoundError(f"{path} is missing: the book cannot show {chapter} ({how} makes it)")
    return path


def stage(target: Path, notebooks: str, root: Path = ROOT) -> Path:
    """The book's sources under ``target`` (emptied first): links to ``root``'s pages and configuration,
    and a copy of each chapter's executed notebook of kind ``notebooks``."""
    sources = {name: notebook(name, notebooks, root) for name in chapters(root)}  # all found before anything is removed
    if target.exists():
        shutil.rmtree(target)
    (target / "chapters").mkdir(parents=True)
    for name in (*PAGES, *CONFIG):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} is missing" + (" (python -m lib.scorecard writes it)" if name == "_generated" else ""))
        (target / name).symlink_to(root / name)
    for name, path in sources.items():
        shutil.copyfile(path, target / "chapters" / f"{name}.ipynb")
    return target


BUILDERS = {"html": "html", "pdflatex": "latex"}  # Jupyter Book's builder, and the folder under _build/ it writes


def build(out: Path, notebooks: str, root: Path = ROOT, timeout: float = 900, builder: str = "html") -> subprocess.CompletedProcess:
    """Stage the sources and build them with warnings as errors: the HTML pages land in
    ``out/_build/html``; with ``builder="pdflatex"`` (TeX Live needed) the PDF in ``out/_build/latex``."""
    if builder not in BUILDERS:
        raise ValueError(f"builder {builder!r} is unknown; choose one of {list(BUILDERS)}")
    source = stage(out / "_build" / "source", notebooks, root)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    strict = ["-W", "--keep-going"] if builder == "html" else []  # LaTeX warns about fonts and boxes that HTML never meets
    return subprocess.run([str(jupyter_book), "build", *strict, "--builder", builder, "--path-output", str(out), str(source)],
                          cwd=root, capture_output=True, text=True, timeout=timeout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lib.book", description=__doc__.split("\n\n")[0])
    parser.add_argument("--notebooks", choices=NOTEBOOKS, default="fresh",
                        help="fresh: the notebooks make book has just executed (results/quick/); committed: chapters/*.ipynb")
    parser.add_argument("--out", type=Path, default=ROOT, help="the build goes to OUT/_build/ (default: the repository's _build/)")
    parser.add_argument("--builder", choices=BUILDERS, default="html", help="html (the book) or pdflatex (a PDF, with TeX Live)")
    args = parser.parse_args(argv)
    try:
        done = build(args.out.resolve(), args.notebooks, builder=args.builder)
    except FileNotFoundError as err:
        parser.exit(2, f"error: {err}\n")
    sys.stdout.write(done.stdout[-4000:])
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise SystemExit(f"the book did not build (jupyter-book exited {done.returncode}); nothing tracked was changed")
    built = args.out.resolve() / "_build" / BUILDERS[args.builder]
    print(f"The book is in {built / 'index.html' if args.builder == 'html' else next(built.glob('*.pdf'), built)}")


if __name__ == "__main__":
    main()
