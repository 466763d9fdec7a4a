#!/usr/bin/env bash
# Makes sure a pinned Python package is installed in its own virtualenv,
# .tools/<package>-<version>/, installing it from PyPI the first time, and
# prints the virtualenv's folder. The scripts that need a Python tool
# (pandas, schemathesis, kubernetes-validate) use this.
#
# usage: scripts/python-tool.sh <package> <version> [<other-package>==<version> ...]
#
# Other pinned packages go into the same virtualenv (pandas reads Parquet
# with pyarrow); the folder is named after the first only.
# Needs python3 with pip and venv, and PyPI, the first time only.
set -euo pipefail
package="${1:?usage: scripts/python-tool.sh <package> <version>}"
version="${2:?usage: scripts/python-tool.sh <package> <version>}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shift 2
others=("$@")
venv="$root/.tools/$package-$version"

installed() {
  [ -x "$venv/bin/python" ] || return 1
  local requirement
  for requirement in "$package==$version" "${others[@]}"; do
    "$venv/bin/python" -c \
      'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
      "${requirement%%==*}" "${requirement#*==}" 2>/dev/null || return 1
  done
}

if ! installed; then
  fail() { echo "python-tool: $*" >&2; exit 1; }
  command -v python3 >/dev/null 2>&1 || fail "python3 is needed to install $package $version"
  python3 -m pip --version >/dev/null 2>&1 || fail "pip is not available (python3 -m pip); it is needed to install $package $version"
  echo "python-tool: installing $package $version from PyPI into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" >&2 || fail "python3 -m venv failed (on Debian: apt-get install python3-venv)"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package==$version" "${others[@]}" >&2; then
    rm -rf "$venv"
    fail "could not install $package $version from PyPI (no network?)"
  fi
  installed || fail "$package $version is not importable after installing it"
fi
echo "$venv"
