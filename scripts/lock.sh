#!/usr/bin/env bash
# Re-resolves requirements.lock (names, versions, hashes; no URLs) after a
# dependency was added or changed in a pyproject.toml.
#
# Every package already pinned keeps its version: uv lock has no uv.lock to
# start from (it records URLs, so it is never committed), and without this it
# would move every pin to the newest release. The pins are passed as
# constraint-dependencies in a temporary copy of the root pyproject.toml.
# `scripts/lock.sh --upgrade` re-resolves everything to the newest versions;
# `scripts/lock.sh --unpin NAME [--unpin NAME ...]` frees just those packages
# (when a new dependency conflicts with an existing pin).
set -euo pipefail
cd "$(dirname "$0")/.."
UV=.tools/bin/uv
backup=$(mktemp)
cp pyproject.toml "$backup"
trap 'cp "$backup" pyproject.toml; rm -f "$backup" uv.lock' EXIT
unpinned=()
upgrade=0
while [ $# -gt 0 ]; do
  case "$1" in
    --upgrade) upgrade=1 ;;
    --unpin) shift; unpinned+=("$1") ;;
    *) echo "usage: scripts/lock.sh [--upgrade | --unpin NAME ...]" >&2; exit 2 ;;
  esac
  shift
done
if [ "$upgrade" = 0 ] && [ -s requirements.lock ]; then
  pins=$(grep -E '^[A-Za-z0-9_.-]+==' requirements.lock | sed -E 's/ *\\$//' \
    | { if [ ${#unpinned[@]} -gt 0 ]; then grep -v -i -E "^($(IFS='|'; echo "${unpinned[*]}"))=="; else cat; fi; } \
    | sed -E 's/.*/    "&",/')
  python3 - "$pins" <<'PY'
import sys
from pathlib import Path

path = Path("pyproject.toml")
text = path.read_text()
block = "constraint-dependencies = [\n" + sys.argv[1] + "\n]\n"
path.write_text(text.replace("[tool.uv]\n", "[tool.uv]\n" + block, 1))
PY
fi
"$UV" lock -q
"$UV" export -q --frozen --all-packages --no-emit-workspace --all-groups \
  --format requirements-txt --no-header -o requirements.lock
