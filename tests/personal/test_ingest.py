"""Ingest: chunking, the file formats, and malformed files that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pllm.errors import IngestError
from pllm.personal.ingest import chunk_text, expand_paths, parse_file
from pllm.personal.vault import approx_tokens


def test_paragraphs_merge_up_to_the_budget() -> None:
    text = "\n\n".join(f"Paragraph {n} " + "word " * 20 for n in range(6))
    chunks = chunk_text(text, budget=60)
    assert 1 < len(chunks) < 6
    assert all(approx_tokens(c) <= 60 for c in chunks)
    assert "".join(chunks).count("Paragraph") == 6


def test_a_long_paragraph_splits_at_sentences() -> None:
    text = " ".join(f"Sentence number {n} is here." for n in range(60))
    chunks = chunk_text(text, budget=40)
    assert len(chunks) > 3
    assert all(c.endswith(".") for c in chunks)


def test_a_transcript_without_punctuation_splits_between_words() -> None:
    text = " ".join(f"then we talked about item {n} and the weather" for n in range(80))  # one sentence, no stop
    chunks = chunk_text(text, budget=40)
    assert len(chunks) > 10 and all(approx_tokens(c) <= 40 for c in chunks)
    assert " ".join(chunks) == text  # every word kept, in order, none cut in two


def test_markdown_headings_stay_with_their_text(tmp_path: Path) -> None:
    md = tmp_path / "n.md"
    md.write_text("# Pets\n\nMy cat is called Pixel.\n\n# Work\n\n" + "Busy week at the hospital. " * 30)
    chunks = [r.content for r in parse_file(md, chunk_tokens=60)]
    assert chunks[0].startswith("# Pets\n\nMy cat")
    assert any(c.startswith("# Work\n\nBusy") for c in chunks)


def test_jsonl_with_timestamps(tmp_path: Path) -> None:
    f = tmp_path / "msgs.jsonl"
    f.write_text('{"text": "first", "timestamp": "2024-05-01T10:00:00Z"}\n\n'
                 '{"text": "second", "timestamp": 1700000000}\n')
    records = parse_file(f)
    assert [r.content for r in records] == ["first", "second"]
    assert records[0].created_at == 1714557600.0
    assert records[1].created_at == 1700000000.0


@pytest.mark.parametrize("body, message", [
    ('{"text": "ok"}\n{"text": \n', ":2: not valid JSON"),
    ('{"text": "ok"}\n{"txt": "typo"}\n', ':2: expected an object with a non-empty "text"'),
    ('{"text": "ok", "timestamp": "yesterday"}\n', ":1: timestamp 'yesterday'"),
])
def test_malformed_jsonl_names_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(body)
    with pytest.raises(IngestError, match=str(f).replace(".", r"\.") + message.replace("(", r"\(")):
        parse_file(f)


def test_a_lamp_questions_file(tmp_path: Path) -> None:
    f = tmp_path / "dev_questions.json"
    f.write_text(json.dumps([{"id": "110", "input": "q", "profile": [
        {"id": "1", "title": "Deep nets", "abstract": "We study depth.", "date": "2019-01-01"},
        {"id": "2", "text": "Great movie", "score": "5"}]}]))
    records = parse_file(f)
    assert [r.content for r in records] == ["title: Deep nets\nabstract: We study depth.",
                                            "text: Great movie\nscore: 5"]
    assert records[0].source.endswith("#110") and records[0].kind == "lamp"


def test_a_lamp_file_without_profiles_is_malformed(tmp_path: Path) -> None:
    f = tmp_path / "q.json"
    f.write_text(json.dumps([{"id": "1", "input": "q"}]))
    with pytest.raises(IngestError, match='record 0: missing its "profile" list'):
        parse_file(f)


def test_unsupported_missing_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(b"%PDF")
    with pytest.raises(IngestError, match=r"unsupported file type \.pdf"):
        parse_file(tmp_path / "a.pdf")
    with pytest.raises(IngestError, match="no such file"):
        parse_file(tmp_path / "gone.txt")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(IngestError, match="not UTF-8"):
        parse_file(tmp_path / "b.txt")


def test_folders_expand_to_supported_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in ("a.txt", "sub/b.md", "c.png"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in expand_paths([tmp_path])] == ["a.txt", "b.md"]
