# The user-facing commands. A new user needs only `make book` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
JB_FLAGS := -n -W --keep-going

.PHONY: setup book book-student test exercises bench clean clean-cache help

help:
	@echo "make book          build the whole book offline into book/_build/html"
	@echo "make test          run the full test suite (builds the book too)"
	@echo "make setup         only create .venv and install everything"
	@echo "make book-student  the student edition (solutions hidden) into book/_build_student/html"
	@echo "make exercises     regenerate exercises/ from solutions/"
	@echo "make bench         run the speed and memory benchmark"

# The environment is rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

book: $(STAMP)
	$(PY) tools/vendor_web_assets.py
	$(VENV)/bin/jupyter-book build book $(JB_FLAGS)
	@echo "The book is in book/_build/html/index.html"

book-student: $(STAMP)
	$(PY) tools/build_student_book.py

exercises: $(STAMP)
	$(PY) tools/make_exercises.py

test: $(STAMP)
	$(PY) tools/vendor_web_assets.py
	bash tools/ensure_chromium.sh
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_sweep.py

clean:
	rm -rf book/_build book/_build_student

clean-cache:
	rm -rf "$${SANITY_LIB_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/sanity_lib}"
