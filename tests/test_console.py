"""Long runs show life: piped output gets a plain progress line every few steps, with an ETA measured on the run."""

from __future__ import annotations

import pytest

from pllm.console import StepProgress


def test_piped_progress_prints_steps_with_a_measured_eta(capsys: pytest.CaptureFixture[str]) -> None:
    with StepProgress("adapt", every=5) as progress:
        progress.note("training, 10 steps")
        for step in range(1, 11):
            progress.step(step, 10, 2.0 / step)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "adapt: training, 10 steps"
    steps = [line for line in lines if line.startswith("adapt: step")]
    assert [line.split(",")[0] for line in steps] == ["adapt: step 1/10", "adapt: step 5/10", "adapt: step 10/10"]
    assert "loss 2.000" in steps[0] and "s/step, about" in steps[0] and steps[-1].endswith("about 0 s left")
