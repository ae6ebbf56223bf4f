"""Long runs show life: piped output gets a plain progress line every few steps, with an ETA measured on the run."""

from __future__ import annotations

import pytest

from pllm.console import StepProgress, progress_bar


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


def test_events_are_json_lines_a_watching_process_reads(capsys: pytest.CaptureFixture[str]) -> None:
    """`pllm adapt --events`: every phase and every step as one JSON object a line; the device API's job reads them
    without parsing words."""
    import json

    from pllm.personal.adapt_job import _event

    with StepProgress("adapt", events=True) as progress:
        progress.note("loading the model (fp32)")
        for step in range(1, 4):
            progress.step(step, 3, 1.0 / step)
    events = [_event(line) for line in capsys.readouterr().err.splitlines()]
    assert events[0] == {"event": "phase", "phase": "loading the model (fp32)"}
    assert [e["step"] for e in events[1:]] == [1, 2, 3] and events[-1]["eta_s"] == 0  # type: ignore[index]
    assert events[-1]["loss"] == round(1 / 3, 4)  # type: ignore[index]
    assert _event("adapt: step 1/3, loss 1.000") is None and _event("{not json") is None
    assert json.loads(json.dumps(events[1]))["total"] == 3


def test_a_progress_bar_piped_prints_a_line_each_tenth(capsys: pytest.CaptureFixture[str]) -> None:
    """An 18-minute `pllm eval | tee` printed nothing: piped, every bar now logs plain lines instead."""
    with progress_bar() as bar:
        task = bar.add_task("ingest", total=20)
        for _ in range(20):
            bar.advance(task)
        bar.update(task, completed=20)  # said again: not printed twice
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"ingest: {n}/20" for n in range(2, 21, 2)]
