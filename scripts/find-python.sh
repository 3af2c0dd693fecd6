#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter (`make test PY=3.13` asks for one): pythonX.Y on
# PATH, else pyenv's newest X.Y.* (pyenv's shim for a version that is not selected only prints an error).
set -euo pipefail
v=${1:?usage: find-python.sh X.Y}
root=${PYENV_ROOT:-$HOME/.pyenv}
for py in "python$v" $(ls -d "$root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV); do
  if "$py" -c 'import sys; assert "%d.%d" % sys.version_info[:2] == sys.argv[1]' "$v" >/dev/null 2>&1; then
    command -v "$py"
    exit 0
  fi
done
echo "no Python $v found (install it, or pass PYTHON=/path/to/python$v)" >&2
exit 1
