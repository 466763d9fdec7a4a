#!/usr/bin/env bash
# Installs pandas (pinned below) into a virtualenv under .tools/ on first use
# and prints the path of that virtualenv's python. tests/exports.rs reads the
# CSV exports with it (tests/exports/check_with_pandas.py), as an evaluator's
# notebook would, and the Parquet exports through pyarrow (pinned below too);
# scripts/test.sh runs this first.
#
#   scripts/ensure-pandas.sh      prints e.g. /…/.tools/pandas-2.3.3/bin/python
#
# Needs python3 with pip and venv, and PyPI, the first time only.
set -euo pipefail
version="2.3.3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/python-tool.sh" pandas "$version" pyarrow==22.0.0)"
echo "$venv/bin/python"
