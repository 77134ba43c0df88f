# The README's two commands. Both first set up .venv (once, and again when pyproject.toml changes).
#   make book   execute every chapter in the quick profile with papermill into results/quick/, then render _build/html
#               from those notebooks (staged under _build/source: no tracked file changes)
#   make test   the unit tests, nbval over every chapter (executed afresh into a temporary results folder),
#               the regression guard against the committed notebooks, and the built book in a browser
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test setup notebooks pdf benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python -m lib.run chapters/[0-9]*.py --profile quick
	$(BIN)/python -m lib.scorecard
	$(BIN)/python -m lib.book --notebooks fresh

# A deliberate step, not a side effect of make book: re-execute the quick profile and copy each executed notebook over
# chapters/<chapter>.ipynb, the committed quick run that the regression guard compares every later run with. Commit them.
notebooks: $(STAMP)
	$(BIN)/python -m lib.run chapters/[0-9]*.py --profile quick --refresh-notebooks

test: $(STAMP)
	$(BIN)/python -m pytest tests chapters --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=600

# A PDF of the book from the committed notebooks (no chapter is executed), through Jupyter Book's LaTeX builder. It needs
# TeX Live (see the README); it is not part of make test. The PDF lands in _build/latex/.
pdf: $(STAMP)
	$(BIN)/python -m lib.scorecard
	$(BIN)/python -m lib.book --notebooks committed --builder pdflatex

benchmark: $(STAMP)
	$(BIN)/python benchmarks/batching.py
	$(BIN)/python benchmarks/cifar_augmentation.py
	$(BIN)/python benchmarks/cpu_profiles.py
	$(BIN)/python benchmarks/cpu_roofline.py
	$(BIN)/python benchmarks/quick_book.py
	$(BIN)/python benchmarks/guard_drift.py
	$(BIN)/python benchmarks/seed_count.py

clean:
	rm -rf _build _generated results/quick
