#!/usr/bin/env bash
# Set up, build the built-in sample image (no network, no daemon), and run the main job:
# docker-save tarball -> normalize-timestamps + exclude -> a new tarball, an OCI layout and
# an expanded directory; then show what was written.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --python >&2
OUT=${1:-demo-out}
rm -rf "$OUT" && mkdir -p "$OUT"
OS=.venv/bin/occystrap
.venv/bin/python -m occystrap.sample "$OUT/sample.tar"
echo "== built $OUT/sample.tar"
echo "== tar -> tar with filters"
$OS process tar://"$OUT/sample.tar" tar://"$OUT/normalized.tar" \
    -f normalize-timestamps -f 'exclude:pattern=**/*.pyc' -f inspect:file="$OUT/layers.jsonl"
echo "== tar -> OCI image layout"
$OS process tar://"$OUT/sample.tar" ocidir://"$OUT/layout:sample"
echo "== tar -> expanded directory (whiteouts applied)"
$OS process tar://"$OUT/sample.tar" dir://"$OUT/dir?expand=true"
echo "== search"
$OS search tar://"$OUT/sample.tar" '*.conf' || true
echo "== results"
sha256sum "$OUT/sample.tar" "$OUT/normalized.tar"
cat "$OUT/layers.jsonl"
find "$OUT/dir" -maxdepth 3 | sort | head -40
