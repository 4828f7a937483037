#!/usr/bin/env bash
# Generates the Python code and type stubs for every contract under protos/
# into packages/marquee-protos/src/ (imported as marquee.<domain>.v1.<name>_pb2).
#
#   scripts/gen_protos.sh           regenerate the checked-in tree (make proto)
#   scripts/gen_protos.sh --check   regenerate into a temp dir and fail, listing
#                                   the drifted files, if the checked-in tree
#                                   differs (make check-proto, run in CI)
#
# GENERATED CODE MUST NEVER BE EDITED BY HAND. Everything under
# packages/marquee-protos/src/marquee/ is owned by this script and replaced
# wholesale on every run: change the .proto files and rerun it.
#
# Outputs: *_pb2.py, *_pb2_grpc.py (grpc_tools.protoc, pinned with grpcio),
# *_pb2.pyi and *_pb2_grpc.pyi (mypy-protobuf; sync and grpc.aio stubs), an
# empty __init__.py in every package directory, a py.typed marker, and
# marquee/descriptors.binpb: a FileDescriptorSet of every contract (imports
# included) WITH source info, i.e. the doc comments. Server reflection built on
# a pool from it lets `grpcurl describe` show the comments (the *_pb2 modules
# carry no comments). The run is deterministic: inputs sorted, paths relative,
# no timestamps.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=generate
case "${1:-}" in
  "") ;;
  --check) MODE=check ;;
  -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

PY=.venv/bin/python
PROTO_ROOT=protos
OUT_ROOT=packages/marquee-protos/src
PKG=marquee

for tool in "$PY" .venv/bin/protoc-gen-mypy .venv/bin/protoc-gen-mypy_grpc; do
  [ -x "$tool" ] || { echo "gen_protos: $tool not found; run 'make env' first" >&2; exit 1; }
done

# google/protobuf/*.proto (well-known types) ship inside grpc_tools.
WKT_INCLUDE=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')

mapfile -t PROTOS < <(cd "$PROTO_ROOT" && find "$PKG" -name '*.proto' -type f | LC_ALL=C sort)
[ "${#PROTOS[@]}" -gt 0 ] || { echo "gen_protos: no .proto files under $PROTO_ROOT/$PKG" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/marquee-protos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
GEN="$WORK/out"
mkdir -p "$GEN"

# Relative proto paths + -I protos keep absolute paths out of the output.
(
  cd "$PROTO_ROOT"
  ../"$PY" -m grpc_tools.protoc \
    -I . \
    -I "$WKT_INCLUDE" \
    --plugin=protoc-gen-mypy=../.venv/bin/protoc-gen-mypy \
    --plugin=protoc-gen-mypy_grpc=../.venv/bin/protoc-gen-mypy_grpc \
    --python_out="$GEN" \
    --grpc_python_out="$GEN" \
    --mypy_out=quiet:"$GEN" \
    --mypy_grpc_out=quiet:"$GEN" \
    --descriptor_set_out="$GEN/$PKG/descriptors.binpb" \
    --include_imports \
    --include_source_info \
    "${PROTOS[@]}"
)

# Every generated directory is a regular package (marquee is owned by this
# distribution alone), so imports and mypy resolve without namespace tricks.
while IFS= read -r dir; do
  : > "$dir/__init__.py"
done < <(find "$GEN/$PKG" -type d | LC_ALL=C sort)
: > "$GEN/$PKG/py.typed"

if [ "$MODE" = generate ]; then
  rm -rf "${OUT_ROOT:?}/$PKG"
  mkdir -p "$OUT_ROOT"
  cp -R "$GEN/$PKG" "$OUT_ROOT/$PKG"
  count=$(find "$OUT_ROOT/$PKG" -type f -name '*_pb2*.py*' | wc -l)
  echo "gen_protos: generated $count files from ${#PROTOS[@]} protos into $OUT_ROOT/$PKG"
  exit 0
fi

# --check: compare file lists and contents (ignoring bytecode caches).
list_files() {
  (cd "$1" && find "$PKG" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' | LC_ALL=C sort)
}
drift=()
if [ -d "$OUT_ROOT/$PKG" ]; then
  while IFS= read -r f; do
    if [ ! -f "$OUT_ROOT/$f" ]; then
      drift+=("missing from the checked-in tree: $OUT_ROOT/$f")
    elif ! cmp -s "$GEN/$f" "$OUT_ROOT/$f"; then
      drift+=("differs: $OUT_ROOT/$f")
    fi
  done < <(list_files "$GEN")
  while IFS= read -r f; do
    [ -f "$GEN/$f" ] || drift+=("stale (no longer generated): $OUT_ROOT/$f")
  done < <(list_files "$OUT_ROOT")
else
  drift+=("missing: $OUT_ROOT/$PKG (nothing generated yet)")
fi

if [ "${#drift[@]}" -gt 0 ]; then
  {
    echo "gen_protos --check: generated code is out of date with protos/ (${#drift[@]} file(s)):"
    printf '  %s\n' "${drift[@]}"
    echo "Run 'make proto' and commit the result. Never edit generated files by hand."
  } >&2
  exit 1
fi
echo "gen_protos --check: generated code is up to date (${#PROTOS[@]} protos)"
