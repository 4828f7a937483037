#!/usr/bin/env bash
# Bootstraps the locked development environment from nothing but Python 3.11.
#  1. a private venv (.tools) holding uv, pinned by version and hash (tools.lock);
#  2. .venv synced exactly to requirements.lock (names, versions, hashes);
#  3. the workspace's own packages installed editable, without dependencies,
#     so nothing outside the lock is ever resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3

if [ ! -x .tools/bin/uv ]; then
  "$PY" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tools.lock
fi
UV=.tools/bin/uv
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$PY" .venv
"$UV" pip sync --quiet --python .venv/bin/python --require-hashes requirements.lock
editables=()
for p in packages/*/ services/*/; do editables+=(-e "$p"); done
"$UV" pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation "${editables[@]}"
