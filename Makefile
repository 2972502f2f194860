# Everyday commands; CI runs .ci/run.
.PHONY: install test lint typecheck bench demo reliability

install:
	pip install -e '.[dev,embedded]'

test:
	pytest

lint:
	ruff check .

typecheck:
	mypy

bench:
	clawnsole bench

# The fault scenarios at full size (tens of thousands of items; minutes), their table at the end.
# A soak: make reliability SOAK=10 (item counts times 10).
reliability:
	pytest -p no:cacheprovider tests/reliability --reliability-scale=full $(if $(SOAK),--soak $(SOAK))

demo:
	python examples/two-workers-demo.py
