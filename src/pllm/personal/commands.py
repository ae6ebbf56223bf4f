"""P-tier commands: `pllm ask` and `pllm chat`. Thin: parse, call the assistant, print."""

from __future__ import annotations

import sys

import typer

from pllm.console import console, err_console, print_json, settings_of
from pllm.errors import UsageError
from pllm.lm.runtime import GenerationConfig, Runtime, StreamStats
from pllm.personal.assistant import Assistant, answer_record

CHAT_HELP = "Commands: /reset forgets the conversation, /exit (or Ctrl-D) leaves."


def ask(
    ctx: typer.Context,
    prompt: str = typer.Argument(..., help="The question or instruction."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: text, tokens, seconds, ..."),
    max_tokens: int = typer.Option(None, "--max-tokens", "-n", min=1, help="Cap on generated tokens."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="0 = greedy (default)."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed."),
    stats: bool = typer.Option(False, "--stats", help="After the answer, print tokens, seconds and tokens/s."),
) -> None:
    """Ask one question; prints the answer (streamed on a terminal)."""
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    settings = settings_of(ctx)
    config = GenerationConfig.from_settings(settings, max_tokens=max_tokens, temperature=temperature, seed=seed)
    assistant = Assistant(Runtime.from_settings(settings))
    if json_out:
        print_json(answer_record(assistant.answer(prompt, config)))
        return
    timing = StreamStats()
    for piece in assistant.stream(prompt, config, timing):
        sys.stdout.write(piece.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if stats:
        err_console.print(f"[dim]{timing.tokens} tokens in {timing.seconds:.2f} s = "
                          f"{timing.tokens_per_second:.1f} tokens/s on {settings.threads} threads "
                          f"({assistant.runtime.model.name})[/dim]")


def chat(
    ctx: typer.Context,
    max_tokens: int = typer.Option(None, "--max-tokens", "-n", min=1, help="Cap on generated tokens per answer."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="0 = greedy (default)."),
    keep_turns: int = typer.Option(6, "--keep-turns", min=0, help="Past turns kept in the prompt."),
) -> None:
    """Chat interactively; answers stream token by token."""
    settings = settings_of(ctx)
    config = GenerationConfig.from_settings(settings, max_tokens=max_tokens, temperature=temperature)
    assistant = Assistant(Runtime.from_settings(settings))
    interactive = sys.stdin.isatty()
    if interactive:
        console.print(f"[dim]pllm chat on {assistant.runtime.model.name}. {CHAT_HELP}[/dim]")
    while True:
        try:
            line = input("you> " if interactive else "")
        except EOFError:
            break
        line = line.strip()
        if not line:
            continue
        if line in ("/exit", "/quit"):
            break
        if line == "/reset":
            assistant.reset()
            err_console.print("[dim]conversation forgotten[/dim]")
            continue
        if line.startswith("/"):
            err_console.print(f"unknown command {line.split()[0]}. {CHAT_HELP}", markup=False)
            continue
        assistant.trim_history(keep_turns)
        if interactive:
            sys.stdout.write("pllm> ")
        for piece in assistant.stream(line, config):
            sys.stdout.write(piece.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command()(ask)
    app.command()(chat)
