#!/usr/bin/env bash
# Installs DuckDB's Python package (pinned below) into a virtualenv under
# .tools/ on first use and prints the path of that virtualenv's python.
# `momentum-dev bench` runs its peer stage with it (scripts/bench_peer.py);
# scripts/bench.sh and scripts/test.sh run this first.
#
#   scripts/ensure-duckdb.sh      prints e.g. /…/.tools/duckdb-1.4.4/bin/python
#
# Needs python3 with pip and venv, and PyPI, the first time only.
set -euo pipefail
version="1.4.4"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/python-tool.sh" duckdb "$version")"
echo "$venv/bin/python"
