#!/usr/bin/env bash
# Every check CI runs: lint, format, types, architecture contracts, the docs build, then the whole test suite
# with coverage.
# Pass extra pytest arguments through, e.g. `bash scripts/check.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff lint";        ruff check src tests benchmarks
echo "== ruff format";      ruff format --check src tests benchmarks
echo "== mypy (strict)";    mypy
echo "== import contracts"; lint-imports
echo "== docs (strict)"; NO_MKDOCS_2_WARNING=1 mkdocs build --strict -q -d "$(mktemp -d)"
echo "== pytest";           python -m pytest --durations=20 --cov=cubebench --cov-report=term:skip-covered --cov-fail-under=85 "$@"
