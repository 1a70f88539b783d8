# `make book`: install everything and build the HTML book at the default (cpu) scale.
# `make test`: install everything and run the whole test suite (what CI runs).
SCALE ?= cpu
JOBS ?= 1

.PHONY: setup book test lab publish lint strip clean
setup:
	bash scripts/setup.sh

book: setup
	.venv/bin/patchnb book --scale $(SCALE) --jobs $(JOBS)

# the pinned tests (trained smoke results in bands, tests/pins.py) run again with one thread and their own cache:
# another reduction order, a cheap proxy for another CPU
test:
	bash scripts/setup.sh --test
	OMP_NUM_THREADS=2 .venv/bin/python -m pytest -q -ra tests
	OMP_NUM_THREADS=1 PATCHNB_CACHE=.test-build/cache-1-thread .venv/bin/python -m pytest -q -ra -m pinned tests

# REMOTE: a git remote name or URL (default origin); the HTML lands on its gh-pages branch
REMOTE ?= origin
publish: book
	.venv/bin/patchnb publish --remote $(REMOTE)

lab: setup
	.venv/bin/jupyter lab --notebook-dir=notebooks

lint:
	.venv/bin/ruff check patchnb tests benchmarks

strip:
	.venv/bin/nbstripout notebooks/*.ipynb

clean:
	rm -rf _build .patchnb
