#!/usr/bin/env bash
# Rebuild the demo checkpoints in assets/checkpoints/ with the project's own commands: train each
# model with the demo preset (EfficientNet-Lite0, ImageNet weights from the offline package, trunk
# frozen for the first epoch, then fine-tuned: the paper's single joint stage), then, for API-Net
# only, the interaction stage (`train-interaction`: the mutual MLP alone on cached pooled features,
# trunk and classifier frozen, so every test-path logit stays the joint stage's; issue #22 and
# docs/explanation/demo-recipe.md), evaluate on the SynthBirds test split, and export a float16 copy
# whose model card carries the test metrics. Variants (LTPA, A^2, the first from-scratch ResNet-18
# demo) are trained the same way for the README's comparison tables but stay in runs/.
#   bash scripts/make_demo_checkpoints.sh              # API-Net and baseline (about 25 min each on 2 CPU cores,
#                                                      # plus about 6 min for the interaction stage)
#   bash scripts/make_demo_checkpoints.sh variants     # also API-Net + LTPA, API-Net + A^2, from-scratch ResNet-18
#   bash scripts/make_demo_checkpoints.sh interaction  # only the interaction stage, started from the joint-stage
#                                                      # API-Net as shipped before it (git commit $JOINT_COMMIT)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${APINET_RUNS_DIR:-runs}
threads=${THREADS:-2}
# The interaction stage's recipe, chosen on the validation split (docs/explanation/demo-recipe.md).
stage_flags=(--steps 3000 --lr 0.1 --per-class 250 --batch-classes 8 --batch-images 4)
# The last commit whose assets/checkpoints/apinet_synthbirds.* is the joint stage alone.
JOINT_COMMIT=${JOINT_COMMIT:-6d71075}

report() {  # test.json
  python - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: test top-1 {r['top1']:.4f}" + (f", LTPA head {r['ltpa_top1']:.4f}" if "ltpa_top1" in r else ""))
PY
}

train_eval() {  # name, export path or "", extra train flags...
  local name=$1 export=$2; shift 2
  python -m apinet train --preset demo --threads "$threads" --no-progress --out "$runs/$name" "$@"
  local extra=()
  [ -n "$export" ] && extra=(--export "$export")
  python -m apinet evaluate --checkpoint "$runs/$name/best.safetensors" --split test --threads "$threads" \
    --out "$runs/$name/test.json" "${extra[@]}" > /dev/null
  report "$runs/$name/test.json"
}

interaction_export() {  # joint-stage checkpoint, stage run name, extra evaluate flags...
  local joint=$1 name=$2; shift 2
  python -m apinet train-interaction --checkpoint "$joint" --out "$runs/$name" "${stage_flags[@]}" \
    --threads "$threads" --no-progress
  python -m apinet evaluate --checkpoint "$runs/$name/best.safetensors" --split test --threads "$threads" \
    --out "$runs/$name/test.json" --export assets/checkpoints/apinet_synthbirds.safetensors "$@" > /dev/null
  report "$runs/$name/test.json"
}

if [ "${1:-}" = interaction ]; then
  # The shipped joint-stage file (float16) from git; it carries its k-NN reference, which depends on the
  # trunk only, so the export keeps it (--reference-per-class 0) and every tensor but mutual.* stays byte-identical.
  mkdir -p "$runs/demo-apinet-joint"
  for ext in safetensors json; do
    git show "$JOINT_COMMIT:assets/checkpoints/apinet_synthbirds.$ext" > "$runs/demo-apinet-joint/best.$ext"
  done
  interaction_export "$runs/demo-apinet-joint/best.safetensors" demo-apinet-interaction --reference-per-class 0
  exit 0
fi
train_eval demo-apinet "" --model apinet
interaction_export "$runs/demo-apinet/best.safetensors" demo-apinet-interaction
train_eval demo-baseline assets/checkpoints/baseline_synthbirds.safetensors --model baseline
if [ "${1:-}" = variants ]; then
  train_eval demo-apinet-ltpa "" --model apinet --ltpa stage3,stage4
  train_eval demo-apinet-a2 "" --model apinet --a2 stage3,stage4
  train_eval demo-scratch-apinet "" --preset demo-scratch --model apinet
  train_eval demo-scratch-baseline "" --preset demo-scratch --model baseline
fi
