#!/usr/bin/env bash
# The synthetic ablation of README "Deviations from the authors' release": the defaults, our
# previous defaults (configs/ablation/previous_defaults.yaml), the release preset and the
# release's baseline trained and evaluated with seeds 0, 1 and 2 at the demo's budget, each
# group of switches flipped alone on the previous defaults (configs/ablation/release_*.yaml)
# with the seeds in GROUP_SEEDS (default: 0), one run at a time (two trainings side by side
# on 2 cores run ~13x slower each: their OpenMP threads spin against each other), then
# `star table` over the runs into docs/results/synthetic_ablation.md.
#   bash scripts/synthetic_ablation.sh [RUNS_DIR]     (default runs/ablation; ~4 min a run on
#   an idle 2-core machine, 17 runs)
# A finished run is skipped (its folder has metrics.json), so an interrupted sweep resumes.
# Several instances may share RUNS_DIR (one per machine with spare cores): each run is claimed with a
# lock that ends with its process. The table covers the finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/ablation}
data=${STAR_CACHE_DIR:-$HOME/.cache/star-reid}/synthetic
configs=(synthetic ablation/previous_defaults synthetic_release synthetic_baseline)
groups=(ablation/release_style ablation/release_skeleton ablation/release_readout ablation/release_graph
        ablation/release_pooling_neck)
group_seeds=" ${GROUP_SEEDS:-0} "
mkdir -p "$runs"
[ -d "$data" ] || star synth --out "$data"
for seed in 0 1 2; do
  todo=("${configs[@]}")
  [[ $group_seeds == *" $seed "* ]] && todo+=("${groups[@]}")
  for cfg in "${todo[@]}"; do
    name="$(basename "$cfg")_seed$seed" out="$runs/$(basename "$cfg")_seed$seed"
    [ -s "$out/metrics.json" ] && continue
    exec 9> "$runs/$name.lock"
    flock -n 9 || continue  # another instance is running it
    star train --config "configs/$cfg.yaml" output_dir="$out" data.root="$data" seed=$seed train.progress=false \
      >> "$runs/$name.log" 2>&1 || { tail -5 "$runs/$name.log"; exit 1; }
    exec 9>&-
  done
done
mkdir -p docs/results
{
  echo "<!-- written by scripts/synthetic_ablation.sh: star table over the runs below -->"
  star table $(for d in "$runs"/*_seed*/; do [ -s "$d/metrics.json" ] && echo "$d"; done)
} > docs/results/synthetic_ablation.md
cat docs/results/synthetic_ablation.md
