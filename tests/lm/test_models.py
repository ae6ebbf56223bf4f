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


def test_the_runtime_loads_a_q8_0_copy_made_once_until_the_formats_are_measured(
        model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.lm.models import SLOW_PREFILL_TYPES, format_choice_path, gguf_file_type, runtime_model

    monkeypatch.setenv("PLLM_CACHE_DIR", str(tmp_path / "cache"))  # a cache no formats bench has measured in
    monkeypatch.delenv("PLLM_MODEL_FORMAT")  # the default, auto
    settings = Settings()
    assert not format_choice_path(settings).exists()
    assert SLOW_PREFILL_TYPES.get(gguf_file_type(model_path) or -1) == "Q4_1"  # the packaged model: slow prefill
    copy = runtime_model(settings)
    assert copy.path != model_path and gguf_file_type(copy.path) == 7 and copy.name == DEFAULT_MODEL.name
    made = copy.path.stat().st_mtime_ns
    assert runtime_model(Settings()).path == copy.path and copy.path.stat().st_mtime_ns == made  # reused
    assert runtime_model(Settings(model_format="packaged")).path == model_path
    assert runtime_model(Settings(model_format="Q4_1")).path == model_path  # the format it already has
    assert runtime_model(Settings(model=copy.path)).path == copy.path  # already fast: loaded as it is
    q4_0 = runtime_model(Settings(model_format="Q4_0"))
    assert gguf_file_type(q4_0.path) == 2 and not q4_0.repacked


def test_auto_serves_what_the_formats_bench_chose_on_this_cpu(
        model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from pllm.lm.hardware import repack_safe
    from pllm.lm.models import format_choice_path, gguf_file_type, runtime_model

    monkeypatch.setenv("PLLM_CACHE_DIR", str(tmp_path / "cache"))  # the choice written here is this test's only
    monkeypatch.delenv("PLLM_MODEL_FORMAT")  # the default, auto
    settings = Settings()
    path = format_choice_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"model": DEFAULT_MODEL.name, "choice": {"format": "Q5_0", "repacked": True}}))
    served = runtime_model(settings)
    assert gguf_file_type(served.path) == 8 and served.repacked == repack_safe()  # never repacked where AMX is
    path.write_text(json.dumps({"model": "another model", "choice": {"format": "Q5_0", "repacked": True}}))
    assert gguf_file_type(runtime_model(settings).path) == 7  # measured for another model: not this one's
    path.write_text("{not json")
    assert gguf_file_type(runtime_model(settings).path) == 7


def test_the_file_type_is_read_from_the_header_as_gguf_reads_it(model_path: Path) -> None:
    from gguf import GGUFReader

    from pllm.lm.models import gguf_file_type

    field = GGUFReader(model_path).fields["general.file_type"]
    assert gguf_file_type(model_path) == int(field.parts[field.data[0]][0])
