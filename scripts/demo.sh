#!/usr/bin/env bash
# The main job, as a user would run it, on the embedded default model and a throwaway home:
# check the machine, create an encrypted vault, ingest a note, ask with and without personalisation, show the profile,
# train the personal LoRA adapter on the device (~1 min) and ask it alone, without any notes in the prompt.
# `make demo` runs this inside the project's virtual environment.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
demo_home=$(mktemp -d)
trap 'rm -rf "$demo_home"' EXIT
export PLLM_HOME="$demo_home" PLLM_PASSPHRASE="demo-passphrase"

step() { printf '\n== %s\n' "$*"; }

step "pllm doctor"
pllm doctor

step "pllm ask: the packaged SmolLM2-135M-Instruct on this CPU"
pllm ask "Say hello and tell me one fun fact about lighthouses." --stats

step "pllm init: an encrypted vault for Mara (SQLCipher) in $demo_home"
pllm init --name Mara

step "pllm ingest: one of Mara's notes"
printf 'My cat is called Pixel and I live in Tromso.\n\nI work as a nurse at the city hospital.\n\nMy boat is called Seabird.\n' > "$demo_home/note.md"
pllm ingest "$demo_home/note.md"
rm "$demo_home/note.md"

step "pllm ask, personalised from the vault (--show-context prints what was used)"
pllm ask "What is my cat called?" --show-context --stats

step "pllm ask --no-personal: the same question to the plain base model"
pllm ask "What is my cat called?" --no-personal

step "pllm profile show"
pllm profile show

step "pllm adapt: a personal LoRA adapter, trained here on the vault, gated, promoted (its progress shows the time left)"
pllm adapt

step "pllm ask --no-context: the adapter alone answers (no profile, no notes in the prompt)"
pllm ask "What is my boat called?" --no-context --stats
pllm adapters list

step "on disk: the vault and the adapter are ciphertext"
if grep -rq -e "Pixel" -e "Seabird" -e "GGUF" "$demo_home"; then echo "FAIL: plaintext found in $demo_home"; exit 1; fi
echo "no plaintext 'Pixel', 'Seabird' or GGUF header anywhere under $demo_home:"
ls -la "$demo_home" "$demo_home/adapters"
