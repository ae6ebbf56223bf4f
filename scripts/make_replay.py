"""Regenerate src/pllm/data/replay.jsonl: general chat answered by the base model itself (greedy).

Answered under the assistant's own system prompt, as in use. Mixed into every personal training set so the
adapter does not forget how to talk, and held out to check
general ability before a promote. Run: .venv/bin/python scripts/make_replay.py
"""

import json
from pathlib import Path

from pllm.config import Settings
from pllm.lm.runtime import GenerationConfig, Runtime
from pllm.personal.assistant import SYSTEM_PROMPT

PROMPTS = [
    "What is the capital of France?", "Explain photosynthesis in one sentence.",
    "Give me three tips for sleeping better.", "What is 12 times 7?", "Write a haiku about autumn.",
    "How do I boil an egg?", "What is a prime number?", "Name three planets in our solar system.",
    "Why is the sky blue?", "What does a CPU do?", "Suggest a name for a bakery.",
    "How many days are in a leap year?", "What is the boiling point of water?",
    "Translate 'good morning' into Spanish.", "What is the largest ocean on Earth?", "Give me a synonym for happy.",
    "How do plants get water?", "What is the opposite of cold?", "Write one sentence about the moon.",
    "What is a noun?", "How can I stay focused while studying?", "What is the tallest mountain in the world?",
    "What do bees make?", "Explain what a recipe is.", "What is gravity?", "List three fruits that are red.",
    "What is the main language spoken in Brazil?", "How do you say thank you in French?",
    "What is the freezing point of water in Fahrenheit?", "Give me a fun fact about octopuses.",
    "What is a rainbow?", "Why do we need sleep?", "What is the square root of 81?",
    "Describe a cat in one sentence.", "What is recycling?", "How many continents are there?",
    "Who wrote Romeo and Juliet?", "What is a verb?", "What should I pack for a beach day?",
    "What is the speed of light, roughly?", "Write a short greeting card message.", "What causes rain?",
    "How do I make a cup of tea?", "What is an atom?", "Name a famous painting.", "What are vitamins?",
    "How can I save money each month?", "What is the difference between weather and climate?",
]


def main() -> None:
    runtime = Runtime.from_settings(Settings())
    path = Path(__file__).resolve().parents[1] / "src" / "pllm" / "data" / "replay.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for prompt in PROMPTS:
            messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]
            answer = runtime.chat(messages, GenerationConfig(max_tokens=64)).text.strip()
            f.write(json.dumps({"prompt": prompt, "answer": answer}, ensure_ascii=False) + "\n")
    print(f"wrote {len(PROMPTS)} examples to {path}")


if __name__ == "__main__":
    main()
