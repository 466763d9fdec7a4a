#!/usr/bin/env bash
# Installs the Frictionless Framework (pinned below) into a virtualenv under
# .tools/ on first use and prints the path of that virtualenv's python.
# tests/open_data.rs validates the open-data package with it, as an
# open-data portal would; scripts/test.sh runs this first.
#
#   scripts/ensure-frictionless.sh   prints e.g. /…/.tools/frictionless-5.18.1/bin/python
#
# Needs python3 with pip and venv, and PyPI, the first time only.
set -euo pipefail
version="5.18.1"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$root/scripts/python-tool.sh" frictionless "$version")"
echo "$venv/bin/python"
