"""Settings: defaults, then the config file, then the environment, then flags."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pllm.config import Settings, available_cores, get_settings


def test_defaults(pllm_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLLM_THREADS")  # the test session's own (conftest)
    s = Settings()
    assert s.home == pllm_home
    assert s.model is None
    assert s.threads == available_cores()
    assert s.temperature == 0.0
    assert s.paths.vault == pllm_home / "vault.db"


def test_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text('n_ctx = 512\nmax_tokens = 33\nthreads = 1\n')
    monkeypatch.setenv("PLLM_CONFIG", str(config))
    monkeypatch.delenv("PLLM_THREADS")  # the test session's own (conftest)
    assert Settings().n_ctx == 512
    monkeypatch.setenv("PLLM_N_CTX", "1024")
    s = Settings()
    assert (s.n_ctx, s.max_tokens) == (1024, 33)  # env beats file; the file still fills the rest
    assert get_settings(n_ctx=4096, threads=None).n_ctx == 4096  # flags beat env; None means "not given"
    assert get_settings(n_ctx=4096, threads=None).threads == 1


def test_paths_expand_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLLM_HOME", "~/somewhere")
    assert Settings().home == Path.home() / "somewhere"


@pytest.mark.parametrize("env, value", [("PLLM_THREADS", "0"), ("PLLM_N_CTX", "12"), ("PLLM_TEMPERATURE", "-1"),
                                        ("PLLM_AUGMENT_SIMILARITY_BAND", "[0.9, 0.1]"),
                                        ("PLLM_AUGMENT_LENGTH_BAND", "[-1, 2]")])
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, env: str, value: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError):
        Settings()


def test_get_settings_is_cached() -> None:
    assert get_settings() is get_settings()


def test_cdcdas_filter_bands_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.personal.augment import AugmentConfig

    monkeypatch.setenv("PLLM_AUGMENT_SIMILARITY_BAND", "[0.1, 0.99]")
    config = AugmentConfig.from_settings(Settings())
    assert config.similarity_band == (0.1, 0.99) and config.length_band == (0.5, 2.0)
