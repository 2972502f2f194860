# Everyday commands; CI runs .ci/run.
.PHONY: install test lint typecheck bench demo

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

demo:
	python examples/two-workers-demo.py
