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

Where the book's public repository is known (:func:`repository_url`), the staged configuration adds
Colab and Binder launch buttons and the repository and issue buttons, and each staged notebook's
first cell (tagged ``outside-clone``) is stamped with the repository and the commit the pages were
built from: a notebook downloaded from a page, or opened on Colab, fetches and installs exactly
that book before it goes on. Inside a clone the cell does nothing.

    python -m lib.book                       # fresh notebooks, HTML in _build/html
    python -m lib.book --notebooks committed --out /tmp/book
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from .provenance import ROOT

PAGES = ("intro.md", "scorecard.md", "status.md", "reference.md", "bibliography.md")
CONFIG = ("_toc.yml", "_config.yml", "_ext", "_static", "references.bib", "_generated")
NOTEBOOKS = ("fresh", "committed")
REPOSITORY_ENV = "BOOK_REPOSITORY_URL"  # the book's public repository (https), when neither Actions nor git's origin names it
GUARD_TAG = "outside-clone"  # the chapters' first cell: outside a clone it fetches and installs the book
STAMPED = re.compile(r'^(BOOK_(REPOSITORY|COMMIT) = os\.environ\.get\("BOOK_\2", )"[^"]*"(\).*)$', re.MULTILINE)
LAUNCH = {"colab_url": "https://colab.research.google.com", "binderhub_url": "https://mybinder.org"}


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


def public_url(remote: str) -> str | None:
    """A git remote as the https address of its repository (``git@host:o/r.git`` too); None for a
    local path or anything else no reader could open."""
    remote = remote.strip()
    if match := re.fullmatch(r"git@([\w.-]+):(.+?)(\.git)?/?", remote):
        return f"https://{match[1]}/{match[2]}"
    if match := re.fullmatch(r"(https://[\w.-]+/.+?)(\.git)?/?", remote):
        return match[1]
    return None


def repository_url(root: Path = ROOT) -> str | None:
    """The book's public repository: $BOOK_REPOSITORY_URL, else the repository a GitHub Actions run
    builds, else the clone's ``origin`` when it is a public address; None when nothing names one."""
    if named := os.environ.get(REPOSITORY_ENV):
        url = public_url(named)
        if url is None:
            raise ValueError(f"${REPOSITORY_ENV}={named!r} is not a repository's https address (e.g. https://github.com/owner/name)")
        return url
    if os.environ.get("GITHUB_REPOSITORY"):
        return f"{os.environ.get('GITHUB_SERVER_URL', 'https://github.com')}/{os.environ['GITHUB_REPOSITORY']}"
    try:
        origin = subprocess.run(["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return public_url(origin.stdout) if origin.returncode == 0 else None


def branch() -> str:
    """The branch the pages' repository and launch buttons open: $BOOK_REPOSITORY_BRANCH, else the
    one a GitHub Actions run builds, else ``main``."""
    return os.environ.get("BOOK_REPOSITORY_BRANCH") or os.environ.get("GITHUB_REF_NAME") or "main"


def head_commit(root: Path = ROOT) -> str | None:
    """The commit checked out in ``root`` (full hash), or None outside a git checkout."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def stamp(notebook_json: str, url: str | None, commit: str | None) -> str:
    """A notebook whose ``outside-clone`` cell names ``url`` and ``commit`` as the book to fetch
    (each left as it is when None); any other notebook as it is."""
    nb = json.loads(notebook_json)
    cells = [c for c in nb.get("cells", []) if GUARD_TAG in c.get("metadata", {}).get("tags", [])]
    for cell in cells:
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        values = {"REPOSITORY": url, "COMMIT": commit}
        source = STAMPED.sub(lambda m: m[0] if values[m[2]] is None else f'{m[1]}"{values[m[2]]}"{m[3]}', source)
        cell["source"] = source.splitlines(keepends=True)
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n" if cells else notebook_json


def launch_config(config_yaml: str, url: str, branch: str) -> str:
    """``_config.yml`` with the repository at ``url`` (pages link to ``branch``), its repository and
    issue buttons, and Colab and Binder launch buttons."""
    config = yaml.safe_load(config_yaml) or {}
    config["repository"] = {"url": url, "branch": branch, "path_to_book": ""}
    config["html"] = {**config.get("html", {}), "use_repository_button": True, "use_issues_button": True}
    config["launch_buttons"] = {**config.get("launch_buttons", {}), **LAUNCH}
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def stage(target: Path, notebooks: str, root: Path = ROOT, url: str | None = None) -> Path:
    """The book's sources under ``target`` (emptied first): links to ``root``'s pages and configuration,
    and a copy of each chapter's executed notebook of kind ``notebooks``, stamped with the commit.
    With a repository ``url`` the configuration is a copy with the launch and repository buttons."""
    sources = {name: notebook(name, notebooks, root) for name in chapters(root)}  # all found before anything is removed
    if target.exists():
        shutil.rmtree(target)
    (target / "chapters").mkdir(parents=True)
    for name in (*PAGES, *CONFIG):
        if not (root / name).exists():
            raise FileNotFoundError(f"{root / name} is missing" + (" (python -m lib.scorecard writes it)" if name == "_generated" else ""))
        if name == "_config.yml" and url:
            (target / name).write_text(launch_config((root / name).read_text(), url, branch()))
        else:
            (target / name).symlink_to(root / name)
    commit = head_commit(root)
    for name, path in sources.items():
        (target / "chapters" / f"{name}.ipynb").write_text(stamp(path.read_text(), url, commit))
    return target


BUILDERS = {"html": "html", "pdflatex": "latex"}  # Jupyter Book's builder, and the folder under _build/ it writes


def build(out: Path, notebooks: str, root: Path = ROOT, timeout: float = 900, builder: str = "html",
          url: str | None = None) -> subprocess.CompletedProcess:
    """Stage the sources and build them with warnings as errors: the HTML pages land in
    ``out/_build/html``; with ``builder="pdflatex"`` (TeX Live needed) the PDF in ``out/_build/latex``.
    ``url``: the book's public repository (default :func:`repository_url`), for the launch buttons."""
    if builder not in BUILDERS:
        raise ValueError(f"builder {builder!r} is unknown; choose one of {list(BUILDERS)}")
    source = stage(out / "_build" / "source", notebooks, root, url or repository_url(root))
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
        url = repository_url()
        done = build(args.out.resolve(), args.notebooks, builder=args.builder, url=url)
    except (FileNotFoundError, ValueError) as err:
        parser.exit(2, f"error: {err}\n")
    sys.stdout.write(done.stdout[-4000:])
    sys.stderr.write(done.stderr[-4000:])
    if done.returncode != 0:
        raise SystemExit(f"the book did not build (jupyter-book exited {done.returncode}); nothing tracked was changed")
    built = args.out.resolve() / "_build" / BUILDERS[args.builder]
    if url is None:
        print(f"No public repository is named (set ${REPOSITORY_ENV}, or give the clone an https origin): the pages have no "
              "launch or repository buttons, and a notebook downloaded from them runs only inside a clone.")
    print(f"The book is in {built / 'index.html' if args.builder == 'html' else next(built.glob('*.pdf'), built)}")


if __name__ == "__main__":
    main()
