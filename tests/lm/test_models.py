"""Finding model files: the packaged default, a user's GGUF, and clear errors for anything else."""

from pathlib import Path

import pytest

from pllm.config import Settings
from pllm.errors import ModelNotFoundError
from pllm.lm.models import DEFAULT_MODEL, resolve_model


def test_default_is_the_packaged_smollm2() -> None:
    model = resolve_model(Settings())
    assert model.name == DEFAULT_MODEL.name
    assert model.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in str(model.path)
    assert 80 < model.size_mb < 120


def test_a_user_gguf_is_used(model_path: Path, tmp_path: Path) -> None:
    mine = tmp_path / "mine.gguf"
    mine.symlink_to(model_path)
    model = resolve_model(Settings(model=mine))
    assert (model.path, model.source, model.name) == (mine, "PLLM_MODEL", "mine")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model file not found"):
        resolve_model(Settings(model=tmp_path / "nope.gguf"))


def test_not_a_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 this is a zip, not a model")
    with pytest.raises(ModelNotFoundError, match="not a GGUF"):
        resolve_model(Settings(model=bad))


def test_a_directory_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not a file"):
        resolve_model(Settings(model=tmp_path))


def test_the_runtime_loads_a_q8_0_copy_made_once(model_path: Path) -> None:
    from pllm.lm.models import SLOW_PREFILL_TYPES, gguf_file_type, runtime_model

    assert SLOW_PREFILL_TYPES.get(gguf_file_type(model_path) or -1) == "Q4_1"  # the packaged model: slow prefill
    copy = runtime_model(Settings())
    assert copy.path != model_path and gguf_file_type(copy.path) == 7 and copy.name == DEFAULT_MODEL.name
    made = copy.path.stat().st_mtime_ns
    assert runtime_model(Settings()).path == copy.path and copy.path.stat().st_mtime_ns == made  # reused
    assert runtime_model(Settings(fast_prefill=False)).path == model_path
    assert runtime_model(Settings(model=copy.path)).path == copy.path  # already fast: loaded as it is


def test_the_file_type_is_read_from_the_header_as_gguf_reads_it(model_path: Path) -> None:
    from gguf import GGUFReader

    from pllm.lm.models import gguf_file_type

    field = GGUFReader(model_path).fields["general.file_type"]
    assert gguf_file_type(model_path) == int(field.parts[field.data[0]][0])
