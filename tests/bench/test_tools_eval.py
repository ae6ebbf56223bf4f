"""`pllm eval --task tools` reads its labelled questions strictly: a malformed or missing file is one line naming
it, exit 2, before any model loads."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize("content", ['{"question": "hi", "tool": null}\n{"question": 3}\n',
                                     '{"question": "hi", "tool": "launch_rocket"}\n', "", None])
def test_a_bad_questions_file_is_one_line(pllm: Run, tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "questions.jsonl"
    if content is not None:
        path.write_text(content)
    out = pllm("eval", "--task", "tools", "--data", str(path))
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().startswith("error:") and str(path) in out.stderr and len(out.stderr.splitlines()) == 1
