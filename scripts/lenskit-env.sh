#!/usr/bin/env bash
# LensKit's own environment, for the benchmarks' LensKit peers (benchmarks/lenskit_worker.py, issue #22).
# LensKit 2025 pins pandas~=2.0 while tastebud runs on pandas 3, so it cannot go into the bench extra
# (pip would downgrade pandas for the whole project): it gets a Python 3.11 venv of its own, with
# torch from this machine's CPU wheel. About a minute; does nothing when the env is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${LENSKIT_VENV:-.venv-lenskit}
version=2025.8.1
stamp=$venv/.installed-lenskit-$version
[ -f "$stamp" ] && exit 0
python=$(bash scripts/find-python.sh 3.11)
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "lenskit==$version" "pandas<3" "torch==2.13.0"
touch "$stamp"
