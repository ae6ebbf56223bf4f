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
