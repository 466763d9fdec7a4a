#!/usr/bin/env bash
# Installs pandas (pinned below) into a virtualenv under .tools/ on first use
# and prints the path of that virtualenv's python. tests/exports.rs reads the
# CSV exports with it (tests/exports/check_with_pandas.py), as an evaluator's
# notebook would; scripts/test.sh runs this first.
#
#   scripts/ensure-pandas.sh      prints e.g. /…/.tools/pandas-2.3.3/bin/python
#
# Needs python3 with pip and venv, and PyPI, the first time only.
set -euo pipefail
version="2.3.3"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/pandas-$version"
python="$venv/bin/python"

installed() {
  [ -x "$python" ] && [ "$("$python" -c 'import pandas; print(pandas.__version__)' 2>/dev/null)" = "$version" ]
}

if ! installed; then
  command -v python3 >/dev/null 2>&1 || { echo "ensure-pandas: python3 is needed to install pandas $version" >&2; exit 1; }
  python3 -m pip --version >/dev/null 2>&1 || {
    echo "ensure-pandas: pip is not available (python3 -m pip); it is needed to install pandas $version" >&2
    exit 1
  }
  echo "ensure-pandas: installing pandas $version from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || {
    echo "ensure-pandas: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
  }
  "$python" -m pip install --quiet --disable-pip-version-check "pandas==$version" >&2 || {
    rm -rf "$venv"
    echo "ensure-pandas: could not install pandas $version from PyPI (no network?)" >&2
    exit 1
  }
  installed || { echo "ensure-pandas: pandas $version does not import after installing it" >&2; exit 1; }
fi
echo "$python"
