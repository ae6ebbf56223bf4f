#!/usr/bin/env bash
# Reproduce the evaluation tables of docs/BENCHMARKS.md: every synthetic LaMP task (`medium`: 10 users x 10
# queries), both MovieLens tasks (ratings: 34 users x 3 queries; tags: every user with a query the data allows),
# every available method, one report folder each under docs/eval/. Training users are always disjoint from the
# evaluated ones (see src/pllm/bench/data.py). About two hours on two cores; run it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
mkdir -p docs/eval
SYNTH_METHODS=stats,majority,none,rag,profile,task,peft,rag+peft,router
ML_METHODS=stats,majority,none,rag,profile,task,router
TASKS=${TASKS:-lamp1 lamp2 lamp3 lamp4 lamp5 lamp7 movielens-rating movielens-tag}
for task in $TASKS; do
  case $task in
    movielens-rating) args=(--users 34 --methods "$ML_METHODS") ;;
    movielens-tag) args=(--methods "$ML_METHODS") ;;
    *)
      methods=$SYNTH_METHODS
      case $task in lamp4|lamp5|lamp7) methods=${methods/majority,/} ;; esac  # no label to count in generation
      [ "$task" = lamp3 ] && methods=$methods,continual  # three trainings per user: measured on one task
      args=(--synthetic medium --methods "$methods") ;;
  esac
  pllm eval --task "$task" "${args[@]}" --seed 0 --json --report "docs/eval/$task" > "docs/eval/$task.json"
done
