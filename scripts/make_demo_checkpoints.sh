#!/usr/bin/env bash
# Rebuild the demo checkpoints in assets/checkpoints/ with the project's own commands: train each
# model with the demo preset (EfficientNet-Lite0, ImageNet weights from the offline package, trunk
# frozen for the first epoch, then fine-tuned), evaluate it on the SynthBirds test split, and export a
# float16 copy whose model card carries the test metrics. Variants (LTPA, A^2, the first from-scratch
# ResNet-18 demo) are trained the same way for the README's comparison tables but stay in runs/.
#   bash scripts/make_demo_checkpoints.sh            # API-Net and baseline (about 25 min each on 2 CPU cores)
#   bash scripts/make_demo_checkpoints.sh variants   # also API-Net + LTPA, API-Net + A^2, from-scratch ResNet-18
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${APINET_RUNS_DIR:-runs}
threads=${THREADS:-2}

train_eval() {  # name, export path or "", extra train flags...
  local name=$1 export=$2; shift 2
  python -m apinet train --preset demo --threads "$threads" --no-progress --out "$runs/$name" "$@"
  local extra=()
  [ -n "$export" ] && extra=(--export "$export")
  python -m apinet evaluate --checkpoint "$runs/$name/best.safetensors" --split test --threads "$threads" \
    --out "$runs/$name/test.json" "${extra[@]}" > /dev/null
  python - "$runs/$name/test.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: test top-1 {r['top1']:.4f}" + (f", LTPA head {r['ltpa_top1']:.4f}" if "ltpa_top1" in r else ""))
PY
}

train_eval demo-apinet assets/checkpoints/apinet_synthbirds.safetensors --model apinet
train_eval demo-baseline assets/checkpoints/baseline_synthbirds.safetensors --model baseline
if [ "${1:-}" = variants ]; then
  train_eval demo-apinet-ltpa "" --model apinet --ltpa stage3,stage4
  train_eval demo-apinet-a2 "" --model apinet --a2 stage3,stage4
  train_eval demo-scratch-apinet "" --preset demo-scratch --model apinet
  train_eval demo-scratch-baseline "" --preset demo-scratch --model baseline
fi
