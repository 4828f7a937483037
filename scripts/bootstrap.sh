#!/usr/bin/env bash
# Bootstraps the locked development environment from nothing but Python 3.11.
#  1. a private venv (.tools) holding uv, pinned by version and hash (tools.lock);
#  2. .venv synced exactly to requirements.lock (names, versions, hashes);
#  3. the workspace's own packages installed editable, without dependencies,
#     so nothing outside the lock is ever resolved.
# Steps 2 and 3 run only when .venv is missing or its stamp (.venv/.marquee-synced,
# a hash of requirements.lock, the workspace members' pyproject.toml files and
# this script) differs: a sync briefly uninstalls the workspace packages, so a
# command running beside `make run` could find .venv/bin/marquee missing.
# MARQUEE_FORCE_SYNC=1 syncs anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP=.venv/.marquee-synced

# What the environment is made from; a new or removed member changes it too,
# since sha256sum prints each file's name beside its hash.
env_hash() {
  sha256sum requirements.lock packages/*/pyproject.toml services/*/pyproject.toml \
    scripts/bootstrap.sh | sha256sum | cut -d' ' -f1
}

in_sync() {
  [ "${MARQUEE_FORCE_SYNC:-0}" != 1 ] && [ -x .venv/bin/python ] && [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "$(env_hash)" ]
}

in_sync && exit 0

if [ ! -x .tools/bin/uv ]; then
  "$PY" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r tools.lock
fi
# One sync at a time: two `make` runs started together would otherwise
# uninstall each other's packages. The second waits, then finds it done.
exec 9>.tools/.bootstrap.lock
flock 9
in_sync && exit 0

UV=.tools/bin/uv
[ -x .venv/bin/python ] || "$UV" venv --quiet --python "$PY" .venv
# A sync cut short must not look finished.
rm -f "$STAMP"
hash=$(env_hash)
# Bytecode is written here, once: where PYTHONDONTWRITEBYTECODE is set (containers,
# CI) nothing else ever writes it, and every process would compile all it imports
# at each start (~0.5 s of CPU for a service process on a 2-core machine).
"$UV" pip sync --quiet --compile-bytecode --python .venv/bin/python --require-hashes requirements.lock
editables=()
for p in packages/*/ services/*/; do editables+=(-e "$p"); done
"$UV" pip install --quiet --python .venv/bin/python --no-deps --no-build-isolation "${editables[@]}"
# The workspace's own sources (installed editable, so not compiled above). A file
# changed later is compiled again in memory at import, as without this.
.venv/bin/python -m compileall -q packages/*/src services/*/src
echo "$hash" >"$STAMP"
