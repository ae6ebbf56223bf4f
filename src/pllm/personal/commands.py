"""P-tier commands: init, ingest, ask, chat, and `profile show|export|forget|rekey`. Thin: parse, call, print."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from pllm.config import Settings
from pllm.console import StepProgress, console, err_console, print_json, progress_bar, settings_of
from pllm.errors import (
    CloudError,
    CloudUnavailableError,
    ConsentError,
    IngestError,
    PllmError,
    UsageError,
    VaultMissingError,
)
from pllm.lm.embeddings import load_embedder, need_embedder
from pllm.lm.runtime import GenerationConfig, Runtime, StreamStats
from pllm.personal.adapters import activate
from pllm.personal.assistant import Assistant, answer_record
from pllm.personal.ingest import expand_paths, is_audio, parse_file, store_records
from pllm.personal.keys import resolve_passphrase, store_in_keyring
from pllm.personal.onboarding import QUESTIONS, needs_onboarding, onboard
from pllm.personal.privacy import PrivacyGate
from pllm.personal.profile import build_profile
from pllm.personal.retrieve import RetrievalConfig, embed_passages
from pllm.personal.router import ExpertInfo, Router
from pllm.personal.vault import Vault, create_vault, dumps_export, open_vault

if TYPE_CHECKING:
    from pllm.lm.speech import Transcriber

CHAT_HELP = ("Commands: /voice FILE (say it: a recording, transcribed here), /good, /bad, /edit TEXT (the answer you "
             "wanted), /rate 1-5, /context (what personalised the last answer), /reset, /exit (or Ctrl-D).")

profile_app = typer.Typer(help="What the vault knows about you: show, export, forget, rekey.", no_args_is_help=True)


def _prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


def ask_passphrase(path: Path) -> str:
    """The passphrase for the vault at `path` (the environment, the keyring), asked for only on a terminal."""
    return resolve_passphrase(path, _prompt if sys.stdin.isatty() else None)


def passphrase_for(settings: Settings) -> str:
    """The vault's passphrase, asked for only when there is a terminal to ask on."""
    path = settings.paths.vault
    if not path.is_file():
        raise VaultMissingError(f"no vault at {path}: create one with `pllm init`")
    return ask_passphrase(path)


def unlock(settings: Settings) -> Vault:
    """Open the user's vault."""
    return open_vault(settings.paths.vault, passphrase_for(settings))


def _assistant(settings: Settings, *, personal: bool, client: str, context: bool = True) -> Assistant:
    vault = unlock(settings) if personal and settings.paths.vault.is_file() else None
    embedder = None
    if vault is not None and settings.embeddings and context:  # `--no-context` retrieves nothing
        embedder = load_embedder()
    runtime = Runtime.from_settings(settings)
    if vault is not None:
        activate(runtime, vault, settings.paths.adapters)
    return Assistant(runtime, vault=vault, personal=personal, client=client, use_context=context,
                     retrieval=RetrievalConfig.from_settings(settings),
                     embedder=embedder)


def _note_if_unpersonalised(assistant: Assistant) -> None:
    if assistant.personal and assistant.vault is None:
        err_console.print("[dim]note: no vault yet, so answers are not personalised "
                          "(create one with `pllm init`)[/dim]")


def init(
    ctx: typer.Context,
    name: str = typer.Option("", "--name", help="Your display name."),
    keyring: bool = typer.Option(False, "--keyring", help="Remember the passphrase in the OS keyring."),
) -> None:
    """Create your home and your encrypted vault."""
    settings = settings_of(ctx)
    path = settings.paths.vault
    if path.exists():
        raise UsageError(f"a vault already exists at {path} (`pllm profile rekey` changes its passphrase)")
    passphrase = resolve_passphrase(path, _prompt if sys.stdin.isatty() else None, confirm=True)
    create_vault(path, passphrase, name=name or None).close()
    console.print(f"created the vault at {path}" + (f" for {name}" if name else ""))
    if keyring and not store_in_keyring(path, passphrase):
        err_console.print("warning: no usable OS keyring here; give the passphrase with PLLM_PASSPHRASE")


def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files or folders: .txt, .md, .jsonl, LaMP questions .json, and "
                                       "voice memos (.wav, .mp3, .m4a, .ogg, .webm, ...: transcribed here, the audio "
                                       "not kept)."),
    model_facts: bool = typer.Option(False, "--model-facts", help="Also ask the model for stated facts (slower)."),
    me: list[str] = typer.Option([], "--me", help="In a .jsonl conversation, the speaker name that is you "
                                 "(repeatable; your vault name, 'user' and 'me' always are)."),
    voice_memos: bool = typer.Option(False, "--voice-memos", help="Also transcribe the recordings inside the "
                                     "folders given (a recording named on its own always is)."),
) -> None:
    """Add your own texts to the vault (deduplicated), and learn the facts they state (about whoever said them)."""
    settings = settings_of(ctx)
    vault = unlock(settings)
    runtime = Runtime.from_settings(settings) if model_facts else None
    files = expand_paths(paths, recordings=voice_memos)
    transcriber: Transcriber | str | None = None
    if any(is_audio(f) for f in files):
        try:
            transcriber = _transcriber(settings)
        except PllmError as exc:  # the texts are ingested all the same; each recording says why it was not
            transcriber = str(exc)
    mine = frozenset(name.lower() for name in [*me, vault.user_name, "user", "me"] if name)
    table = Table(title="ingested")
    for col in ("file", "added", "skipped", "facts"):
        table.add_column(col, justify="left" if col == "file" else "right")
    errors: list[str] = []
    new_passages = False
    progress = progress_bar()
    with vault, progress:
        task = progress.add_task("ingest", total=len(files))
        for path in files:
            progress.update(task, description=f"ingest {path.name}")
            try:
                records = parse_file(path, chunk_tokens=settings.chunk_tokens, transcriber=transcriber)
            except IngestError as exc:
                errors.append(str(exc))
                progress.advance(task)
                continue
            added, skipped, facts = store_records(vault, records, path.name, mine=mine, runtime=runtime)
            table.add_row(str(path), str(added), str(skipped), str(facts))
            progress.advance(task)
            new_passages = new_passages or bool(added)
        embedder = load_embedder() if settings.embeddings and new_passages else None
        if embedder is not None:  # the passages' vectors, kept in the vault: the cost is paid here, not at `ask`
            progress.add_task("embed the new passages for search", total=None)
            embed_passages(vault, embedder)
    console.print(table)
    for line in errors:
        err_console.print(f"error: {line}", markup=False)
    if errors:
        raise typer.Exit(2)


def _transcriber(settings: Settings) -> Transcriber:
    from pllm.lm.speech import Transcriber

    with err_console.status("loading the speech model"):
        return Transcriber.from_settings(settings)


def hear(settings: Settings, audio: Path, transcriber: Transcriber | None = None) -> str:
    """What was said in `audio`, shown on stderr; UsageError when nothing was."""
    transcriber = transcriber or _transcriber(settings)
    with err_console.status(f"listening to {audio.name}"):
        transcript = transcriber.transcribe(audio)
    if not transcript.text:
        raise UsageError(f"heard no speech in {audio}")
    err_console.print(f"[dim]heard ({transcript.duration:.1f} s): {transcript.text}[/dim]", markup=True,
                      highlight=False)
    return transcript.text


def ask(
    ctx: typer.Context,
    prompt: str = typer.Argument(None, help="The question or instruction (or --audio)."),
    audio: Path = typer.Option(None, "--audio", help="Ask by voice: a recording of the question (wav, mp3, m4a, "
                               "ogg, webm, ...), transcribed on the device; the answer is short, to be read aloud."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: text, tokens, seconds, ..."),
    personal: bool = typer.Option(True, "--personal/--no-personal", help="Use what the vault knows about you."),
    context: bool = typer.Option(True, "--context/--no-context",
                                 help="Profile and retrieved items in the prompt (--no-context: adapter only)."),
    show_context: bool = typer.Option(False, "--show-context", help="Print the profile and items that were used."),
    max_tokens: int = typer.Option(None, "--max-tokens", "-n", min=1, help="Cap on generated tokens."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="0 = greedy (default)."),
    seed: int = typer.Option(None, "--seed", help="Sampling seed."),
    stats: bool = typer.Option(False, "--stats", help="After the answer, print tokens, seconds and tokens/s."),
    cloud: bool = typer.Option(False, "--cloud", help="Ask the T-tier (PLLM_CLOUD_URL) through the privacy gate; "
                               "answered on the device when it is down."),
    route: bool = typer.Option(False, "--route", help="Let the router decide: here (always for questions about "
                               "you), a domain expert, or the T-tier; through the privacy gate."),
    explain_route: bool = typer.Option(False, "--explain-route", help="Route (as --route) and print where the "
                                       "question went and why."),
) -> None:
    """Ask one question, typed or spoken; the answer is personalised from your vault and streamed."""
    settings = settings_of(ctx)
    if (prompt is None) == (audio is None):
        raise UsageError("ask takes a question or --audio FILE, not both" if audio else "ask needs a question")
    modality = "voice" if audio is not None else "text"
    if audio is None and not prompt.strip():
        raise UsageError("the prompt is empty")
    config = GenerationConfig.from_settings(settings, max_tokens=max_tokens, temperature=temperature, seed=seed)
    assistant = _assistant(settings, personal=personal, client="cli", context=context)  # a wrong passphrase: now
    try:
        if audio is not None:  # heard once the vault is open (`hear` refuses a recording with no speech)
            prompt = hear(settings, audio)
        if cloud and _ask_cloud(settings, assistant, prompt, config, json_out=json_out, show_context=show_context):
            return
        if route or explain_route:
            _ask_routed(settings, assistant, prompt, config, json_out=json_out, explain=explain_route)
            return
        if json_out:
            record = answer_record(assistant.answer(prompt, config, modality=modality))
            if modality == "voice":
                record["heard"] = prompt
            if show_context:
                record["context"] = assistant.last_context.render() if assistant.last_context else None
            print_json(record)
            _note_if_unpersonalised(assistant)
            return
        timing = StreamStats()
        for piece in assistant.stream(prompt, config, timing, modality=modality):
            sys.stdout.write(piece.text)
            sys.stdout.flush()
        sys.stdout.write("\n")
        _note_if_unpersonalised(assistant)
        if show_context:
            err_console.print(assistant.last_context.render() if assistant.last_context else "(not personalised)",
                              markup=False)
        if stats:
            err_console.print(f"[dim]{timing.tokens} tokens in {timing.seconds:.2f} s = "
                              f"{timing.tokens_per_second:.1f} tokens/s on {settings.threads} threads "
                              f"({assistant.runtime.model.name})[/dim]")
    finally:
        if assistant.vault is not None:
            assistant.vault.close()


def _ask_cloud(settings: Settings, assistant: Assistant, prompt: str, config: GenerationConfig, *, json_out: bool,
               show_context: bool) -> bool:
    """Answer through the T-tier; False (after one line on stderr) when it is down and the device should answer."""
    from pllm.personal.remote import CloudClient  # heavy: imports fastapi and cryptography

    try:
        completion = assistant.answer_remote(prompt, CloudClient(settings, PrivacyGate(settings, assistant.vault)),
                                             config)
    except CloudUnavailableError as exc:
        err_console.print(f"note: {exc}; answering on the device", markup=False)
        return False
    context = assistant.last_context.render() if assistant.last_context else None
    if json_out:
        record = {**answer_record(completion), "tier": "cloud"}
        if show_context:
            record["context"] = context
        print_json(record)
    else:
        sys.stdout.write(completion.text + "\n")
        if show_context:
            err_console.print(context or "(not personalised)", markup=False)
    return True


def _ask_routed(settings: Settings, assistant: Assistant, prompt: str, config: GenerationConfig, *, json_out: bool,
                explain: bool) -> None:
    from pllm.personal.remote import CloudClient  # heavy: imports fastapi and cryptography

    cloud = CloudClient(settings, PrivacyGate(settings, assistant.vault))
    experts: list[ExpertInfo] = []
    reachable = bool(settings.cloud_url)
    if reachable:
        try:
            experts = [ExpertInfo.from_catalog(e)
                       for e in cloud.experts()]
        except (CloudError, CloudUnavailableError, ConsentError) as exc:
            err_console.print(f"note: {exc}; answering on the device", markup=False)
            reachable = False
    router = Router.for_vault(settings, assistant.vault, assistant.embedder or need_embedder("routing"), experts,
                              cloud=reachable)
    completion, decision = assistant.answer_routed(prompt, router, cloud, config, voice=settings.route_expert_voice)
    if json_out:
        print_json({**answer_record(completion), "route": decision.as_dict()})
    else:
        shown = completion.text
        if decision.target == "expert" and settings.route_expert_voice == "expert":
            shown = f"[{decision.expert} expert] {shown}"
        sys.stdout.write(shown + "\n")
    if explain:
        err_console.print(f"route: {decision.destination}: {decision.reason}", markup=False)


def _chat_command(assistant: Assistant, line: str) -> bool:
    """Handle a /command; False means leave the chat."""
    command, _, arg = line.partition(" ")
    feedback = {"/good": ("up", None), "/bad": ("down", None), "/edit": ("edit", arg.strip() or None),
                "/rate": ("rating", arg.strip() or None)}
    if command in ("/exit", "/quit"):
        return False
    if command == "/reset":
        assistant.reset()
        err_console.print("[dim]conversation forgotten (the vault keeps what was logged)[/dim]")
    elif command == "/context":
        err_console.print(assistant.last_context.render() if assistant.last_context else "(not personalised)",
                          markup=False)
    elif command in feedback:
        try:
            assistant.feedback(*feedback[command])
            err_console.print("[dim]feedback saved[/dim]")
        except PllmError as exc:
            err_console.print(f"error: {exc}", markup=False)
    else:
        err_console.print(f"unknown command {command}. {CHAT_HELP}", markup=False)
    return True


def _onboarding(vault: Vault) -> None:
    """A new user's first conversation: a few questions, each skippable; nothing is written when all are skipped."""
    console.print("[dim]Your vault is empty: a few questions let pllm know you from the first answer. Enter skips "
                  "one, /skip the rest.[/dim]")
    answers: dict[str, str] = {}
    for question in QUESTIONS:
        try:
            answer = input(f"{question.text} ").strip()
        except EOFError:
            break
        if answer == "/skip":
            break
        if answer:
            answers[question.key] = answer
    if answers:
        learned = onboard(vault, answers)
        console.print(f"[dim]noted: {'; '.join(f'{k}: {v}' for k, v in learned)} (`pllm profile show` lists "
                      "them)[/dim]")


def chat(
    ctx: typer.Context,
    personal: bool = typer.Option(True, "--personal/--no-personal", help="Use what the vault knows about you."),
    max_tokens: int = typer.Option(None, "--max-tokens", "-n", min=1, help="Cap on generated tokens per answer."),
    temperature: float = typer.Option(None, "--temperature", min=0.0, help="0 = greedy (default)."),
    keep_turns: int = typer.Option(4, "--keep-turns", min=0, help="Past turns kept in the prompt."),
) -> None:
    """Chat interactively; answers stream token by token, and feedback teaches pllm what you want."""
    settings = settings_of(ctx)
    config = GenerationConfig.from_settings(settings, max_tokens=max_tokens, temperature=temperature)
    assistant = _assistant(settings, personal=personal, client="chat")
    interactive = sys.stdin.isatty()
    transcriber: Transcriber | None = None
    if interactive:
        console.print(f"[dim]pllm chat on {assistant.runtime.model.name}. {CHAT_HELP}[/dim]")
    try:
        if interactive and assistant.personalised and assistant.vault is not None and needs_onboarding(assistant.vault):
            _onboarding(assistant.vault)
        while True:
            try:
                line = input("you> " if interactive else "").strip()
            except EOFError:
                break
            if not line:
                continue
            modality = "text"
            if line.startswith("/voice"):
                try:
                    transcriber = transcriber or _transcriber(settings)
                    recording = Path(line.removeprefix("/voice").strip()).expanduser()
                    line, modality = hear(settings, recording, transcriber), "voice"
                except PllmError as exc:
                    err_console.print(f"error: {exc}", markup=False)
                    continue
            elif line.startswith("/"):
                if not _chat_command(assistant, line):
                    break
                continue
            assistant.trim_history(keep_turns)
            if interactive:
                sys.stdout.write("pllm> ")
            for piece in assistant.stream(line, config, modality=modality):
                sys.stdout.write(piece.text)
                sys.stdout.flush()
            sys.stdout.write("\n")
            sys.stdout.flush()
    finally:
        if assistant.vault is not None:
            assistant.vault.close()


@profile_app.command("show")
def profile_show(ctx: typer.Context, json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show your profile: facts (yours, and what others said about themselves), topics, style, feedback, mood."""
    with unlock(settings_of(ctx)) as vault:
        profile = build_profile(vault)
    if json_out:
        print_json(profile.as_dict())
        return
    facts = Table(title=f"profile of {profile.name or 'you'}: facts")
    for col in ("key", "value", "source", "confidence"):
        facts.add_column(col)
    for f in profile.facts:
        facts.add_row(f.key, f.value, f.source, f"{f.confidence:.1f}")
    console.print(facts)
    if profile.others:
        others = Table(title="what others said about themselves (imported conversations)")
        for col in ("who", "key", "value", "source"):
            others.add_column(col)
        for f in profile.others:
            others.add_row(f.subject, f.key, f.value, f.source)
        console.print(others)
    summary = Table(show_header=False, title="signals")
    summary.add_column("signal")
    summary.add_column("value", overflow="fold")
    summary.add_row("topics", ", ".join(f"{t} ({w:.1f})" for t, w in profile.topics) or "-")
    summary.add_row("style", profile.style.describe() or "-")
    summary.add_row("feedback", ", ".join(f"{k} {v}" for k, v in profile.feedback.items() if v is not None))
    summary.add_row("mood (last 7 days)", "-" if profile.mood["recent"] is None else f"{profile.mood['recent']:+.2f}")
    voice = profile.voice
    summary.add_row("voice (30 days)", f"{voice['spoken']} spoken, {voice['typed']} typed" + (
        f", speaks most at {', '.join(f'{h:02d}h' for h in voice['hours'])}" if voice["hours"] else "")
        + f"; {voice['memos']} voice memos held")
    summary.add_row("held", ", ".join(f"{v} {k}" for k, v in profile.counts.items()))
    console.print(summary)
    console.print("[bold]summary used in prompts[/bold]\n" + (profile.summary() or "(empty)"), markup=True)


@profile_app.command("export")
def profile_export(
    ctx: typer.Context,
    output: Path = typer.Option(None, "--output", "-o", help="Write to this file (mode 600) instead of stdout."),
) -> None:
    """Export everything the vault holds about you, as JSON (decrypted: handle it with care)."""
    with unlock(settings_of(ctx)) as vault:
        text = dumps_export(vault.export())
    if output is None:
        sys.stdout.write(text + "\n")
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    err_console.print(f"exported to {output}")


def _when(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UsageError(f"{flag} takes an ISO date like 2026-11-21 or 2026-11-21T14:30, not {value!r}") from None


@profile_app.command("forget")
def profile_forget(
    ctx: typer.Context,
    query: str = typer.Argument(None, help="Forget items containing this text (case-insensitive, literal); of a "
                                "file, only the passages (paragraphs, diary entries) that hold it."),
    like: bool = typer.Option(False, "--like", help="Read the query as an SQL LIKE pattern (% and _ wildcards)."),
    everything: bool = typer.Option(False, "--all", help="Forget everything the vault holds about you."),
    since: str = typer.Option(None, "--since", help="Only items from this date on (ISO)."),
    until: str = typer.Option(None, "--until", help="Only items before this date (ISO)."),
    whole_file: bool = typer.Option(False, "--whole-file", help="Forget every passage of each file that holds a "
                                    "match, not only the passages that do."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    retrain: bool = typer.Option(True, "--retrain/--no-retrain",
                                 help="Retrain the active adapter without the forgotten items (default), or only "
                                 "retire the versions that trained on them."),
    json_out: bool = typer.Option(False, "--json", help="Print what was forgotten as JSON."),
) -> None:
    """Delete items for good (secure delete + VACUUM), and every adapter version that trained on them."""
    from pllm.personal.forget import forget_everywhere  # lazy: brings the trainer's modules, ~18 ms

    settings = settings_of(ctx)
    start, end = _when(since, "--since"), _when(until, "--until")
    if not everything and query is None and start is None and end is None:
        raise UsageError("say what to forget: a query, --since/--until, or --all")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("forgetting cannot be undone: add --yes to confirm")
        typer.confirm("Forget these items for good?", abort=True)
    with unlock(settings) as vault, StepProgress("retrain") as progress:
        outcome = forget_everywhere(settings, vault, query=query, like=like, since=start, until=end,
                                    everything=everything, whole_file=whole_file, retrain=retrain,
                                    on_step=progress.step,
                                    on_phase=progress.note)
    if json_out:
        print_json(outcome.as_json())
        return
    report = outcome.vault
    console.print(f"forgot {report.documents} document passages, {report.interactions} interactions and "
                  f"{report.facts} facts" + (f", and {report.synthetic} synthetic items written from them"
                                            if report.synthetic else ""))
    console.print(f"retired adapter versions (files deleted): {', '.join(outcome.retired)}" if outcome.retired
                  else "no adapter version trained on them")
    if outcome.discarded_pending_run:
        console.print("destroyed an interrupted training run that held them")
    if outcome.retrained:
        r = outcome.retrained
        console.print(f"retrained without them: {r.version} " + ("promoted" if r.promoted else f"not promoted: "
                                                                  f"{r.reason}"))
    elif outcome.retired:
        console.print(f"not retrained: {outcome.retrain_skipped}")


@profile_app.command("rekey")
def profile_rekey(ctx: typer.Context) -> None:
    """Change the vault passphrase (new one from PLLM_NEW_PASSPHRASE or a prompt)."""
    settings = settings_of(ctx)
    with unlock(settings) as vault:
        new = os.environ.get("PLLM_NEW_PASSPHRASE")
        if not new:
            if not sys.stdin.isatty():
                raise UsageError("give the new passphrase in PLLM_NEW_PASSPHRASE or run interactively")
            new = _prompt("New passphrase")
            if _prompt("Repeat the new passphrase") != new:
                raise UsageError("the two passphrases differ")
        vault.rekey(new)
    console.print("the vault has a new passphrase" + (" (update PLLM_PASSPHRASE)" if "PLLM_PASSPHRASE" in os.environ
                                                      else ""))


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(ingest)
    app.command()(ask)
    app.command()(chat)
    app.add_typer(profile_app, name="profile")

