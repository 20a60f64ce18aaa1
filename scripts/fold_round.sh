# Sourced by scripts/train_fold_recipe.sh and scripts/fold_ablation.sh (needs fold, run, threads and
# the train command array set): one consistency round on the fold, resumed when it has a checkpoint,
# skipped once finished (DONE):  round NAME INIT [extra consistency options...]
round() {
  local name=$1 init=$2; shift 2
  local resume=()
  [[ -f $run/$name/last.pt ]] && resume=(--resume)
  [[ -f $run/$name/DONE ]] || "${train[@]}" consistency --fold "$fold" --run-dir "$run/$name" --init "$init" \
    --branches 1 --one-mode --crop 240 320 --strong-aug --threads "$threads" --eval-every 0 \
    --export "$run/$name/segmenter.onnx" "${resume[@]}" "$@"
}
