# Everyday commands; CI runs .ci/run.
.PHONY: install test lint typecheck bench demo reliability screenshots bench-dashboard

install:
	pip install -e '.[dev,embedded,web]'

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

# Clawnsole next to pgqueuer, side by side on one PostgreSQL (installs pgqueuer into a scratch venv; ~3 min):
# make compare COMPARE_URL=postgresql://user@host/db   (else $CLAWNSOLE_DATABASE_URL or $DATABASE_URL)
.PHONY: compare
compare:
	python benchmarks/compare/pgqueuer_bench.py $(if $(COMPARE_URL),--database-url $(COMPARE_URL)) $(COMPARE_ARGS)

# The dashboard's browser tests, keeping one screenshot of each page in docs/screenshots/ (README shows the
# overview). Needs Debian's chromium: apt install chromium chromium-driver.
screenshots:
	CLAWNSOLE_SCREENSHOTS=docs/screenshots pytest -p no:cacheprovider tests/web/dashboard

# Every dashboard page's server time on 1,000,000 items (loads them into a database of its own; ~2 min).
bench-dashboard:
	python benchmarks/dashboard_pages.py $(if $(BENCH_URL),--database-url $(BENCH_URL)) $(BENCH_ARGS)
