#!/usr/bin/env bash
# Rebuild the shipped default atlas (assets/atlas): the SynthBirds test split (800 images) through the
# demo checkpoints. Run it from the repository root whenever assets/checkpoints change: the app
# refuses an atlas whose checkpoint SHA-256 differs from the loaded checkpoints'.
#   scripts/make_demo_atlas.sh [--threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
out=assets/atlas
tmp=$(mktemp -d "${TMPDIR:-/tmp}/demo-atlas.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
python -m apinet atlas --data synthbirds --split test \
  --checkpoint assets/checkpoints/apinet_synthbirds.safetensors \
  --baseline assets/checkpoints/baseline_synthbirds.safetensors \
  --out "$tmp/atlas" --workers 1 "$@"
rm -rf "$out.old"
if [ -d "$out" ]; then mv "$out" "$out.old"; fi
mv "$tmp/atlas" "$out"
rm -rf "$out.old"
du -sh "$out"
