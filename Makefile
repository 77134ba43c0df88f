# The README's two commands. Both first set up .venv (once, and again when pyproject.toml changes).
#   make book   execute every chapter in the quick profile with papermill, then render _build/html
#   make test   the unit tests, nbval over every chapter (executed afresh into a temporary results folder),
#               the regression guard against the committed notebooks, and the built book in a browser
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test setup benchmark clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(BIN)/python -m lib.run chapters/[0-9]*.py --profile quick
	$(BIN)/python -m lib.scorecard
	$(BIN)/jupyter-book build -W --keep-going .
	@echo "The book is in _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest tests chapters --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
		--nbval-cell-timeout=600

benchmark: $(STAMP)
	$(BIN)/python benchmarks/batching.py
	$(BIN)/python benchmarks/cifar_augmentation.py
	$(BIN)/python benchmarks/cpu_profiles.py
	$(BIN)/python benchmarks/quick_book.py

clean:
	rm -rf _build _generated results/quick
