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
# The recipe's round options, one place: train_fold_recipe.sh runs rounds 2-3 with
# --safety-weight 2 added (the shipped recipe), fold_ablation.sh without it (class weighting ablated).
round1_args=(--epochs 50 --lr 5e-4 --warmup-iters 100 --procedural-share 0.2 --procedural-frames 200)
round2_args=(--epochs 15 --lr 2e-4 --warmup-iters 50 --procedural-share 0.3 --procedural-frames 200 --seed 1)
round3_args=(--epochs 10 --lr 1e-4 --warmup-iters 50 --procedural-share 0.4 --procedural-frames 200 --seed 2)
