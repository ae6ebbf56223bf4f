#!/usr/bin/env bash
# Reproduce the evaluation tables of docs/BENCHMARKS.md: every synthetic LaMP task (small users) and both MovieLens
# tasks, every available method, one report folder each under docs/eval/. About 75 minutes on two cores; run it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p docs/eval
SYNTH_METHODS=stats,majority,none,rag,profile,task,peft,rag+peft,router
ML_METHODS=stats,majority,none,rag,profile,task,router
for task in lamp1 lamp2 lamp3 lamp4 lamp5 lamp7; do
  methods=$SYNTH_METHODS
  case $task in lamp4|lamp5|lamp7) methods=${methods/majority,/} ;; esac  # no label to count in generation
  [ "$task" = lamp3 ] && methods=$methods,continual  # three trainings per user: measured on one task
  pllm eval --task "$task" --synthetic small --methods "$methods" --seed 0 --json --report "docs/eval/$task" \
    > "docs/eval/$task.json"
done
pllm eval --task movielens-rating --users 10 --methods "$ML_METHODS" --seed 0 --json --report docs/eval/movielens-rating \
  > docs/eval/movielens-rating.json
pllm eval --task movielens-tag --methods "$ML_METHODS" --seed 0 --json --report docs/eval/movielens-tag \
  > docs/eval/movielens-tag.json
