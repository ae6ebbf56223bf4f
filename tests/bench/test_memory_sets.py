"""RealMem and BEAM read into the memory task: tiny made-up records in each set's real format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pllm.bench import memory_sets
from pllm.bench.memory import load_histories


def _turn(speaker: str, content: str, **extra: object) -> dict[str, object]:
    return {"speaker": speaker, "content": content, "is_query": False, "query_id": None, **extra}


# RealMem's format (AvatarMemory/RealMemBench, dataset/<Name>_dialogues_256k.json): one person, dated sessions
REALMEM = {
    "_metadata": {"person_name": "Ana_Lee", "total_sessions": 4, "total_tokens": 120},
    "dialogues": [
        {"session_identifier": "Fitness_1:S1_01", "session_uuid": "s0", "current_time": "2025-12-15 (Monday)",
         "extracted_memory": [], "dialogue_turns": [
             _turn("User", "I can only train on Tuesday evenings."),
             _turn("Assistant", "Then a Tuesday evening plan it is.")]},
        {"session_identifier": "Cooking_1:S1_01", "session_uuid": "s1", "current_time": "2025-12-15 (Monday)",
         "extracted_memory": [], "dialogue_turns": [
             _turn("User", "Which knife for onions?", is_query=True, query_id="Q-0001"),
             _turn("Assistant", "A chef's knife.", memory_used=[], memory_session_uuids=["s0"])]},
        {"session_identifier": "Fitness_1:S1_02", "session_uuid": "s2", "current_time": "2025-12-20 (Saturday)",
         "extracted_memory": [], "dialogue_turns": [
             _turn("User", "When should my next workout be?", is_query=True, query_id="Q-0002"),
             _turn("Assistant", "Tuesday evening, as you said.",
                   memory_used=[{"session_uuid": "s0", "content": "User trains on Tuesday evenings."}],
                   memory_session_uuids=["s0"]),
             _turn("User", "Great, thanks.")]},
        {"session_identifier": "Cooking_1:S1_02", "session_uuid": "s3", "current_time": "2025-12-22 (Monday)",
         "extracted_memory": [], "dialogue_turns": [
             _turn("User", "And for bread?", is_query=True, query_id="Q-0003"),
             _turn("Assistant", "A serrated one.", memory_used=[], memory_session_uuids=["s2"])]},
    ],
}


def test_realmem_is_cut_into_histories_of_what_came_before(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_sets, "REALMEM_WINDOW", 2)  # cut after session 2 (ten in the real set)
    (tmp_path / "Ana_Lee_dialogues_256k.json").write_text(json.dumps(REALMEM))
    (history,) = load_histories(tmp_path / "Ana_Lee_dialogues_256k.json")  # one person: an object, not a list
    assert (history.id, history.unit) == ("Ana_Lee@2", "session")
    assert [t.session for t in history.turns] == ["s0", "s0", "s1", "s1"]  # nothing said at or after the cut
    assert [t.speaker for t in history.turns] == ["", "assistant", "", "assistant"]
    times = [t.created_at for t in history.turns]
    assert times == sorted(set(times))  # two sessions on one day keep their order
    (question,) = history.questions
    assert question.question == "When should my next workout be?"
    assert question.answer == "Tuesday evening, as you said."  # the reply is the gold answer
    assert question.evidence == {"s0"}  # the session the reply drew on
    assert {t.unit for t in history.turns if t.unit in question.evidence} == {"s0"}
    # Q-0001 is asked before the cut; Q-0003 names s2, a session of its own window, not in the history
    assert history.left_out == 2
    assert [h.id for h in load_histories(tmp_path)] == ["Ana_Lee@2"]  # a folder of person files


# BEAM's format (mohammadtavakoli78/BEAM, chats/100K/<n>/): the chat and its probing questions
BEAM_CHAT = [
    {"batch_number": 1, "time_anchor": None, "turns": [[
        {"role": "user", "id": 0, "time_anchor": "March-15-2024", "index": "1,1", "question_type": "main_question",
         "content": "I'm building a budget tracker in Flask, due March 29. ->-> 1,1"},
        {"role": "assistant", "id": 1, "content": "Let's plan the sprint around March 29."},
        {"role": "user", "id": 2, "question_type": "followup_question",
         "content": "The dashboard API answers in 400ms now. ->-> 1,2"},
        {"role": "assistant", "id": 3, "content": "Caching would bring that down."}]]},
    {"batch_number": 2, "time_anchor": None, "turns": [[
        {"role": "user", "id": 4, "time_anchor": "April-20-2024", "index": "2,1", "question_type": "main_question",
         "content": "After the caching tweaks the dashboard API averages 250ms. ->-> 2,1"},
        {"role": "assistant", "id": 5, "content": "That is a good improvement."}]]},
]
BEAM_PROBES = {
    "abstention": [{"question": "What is my dog called?", "ideal_response": "Not mentioned.", "plan_reference": "1"}],
    "knowledge_update": [{
        "question": "What is the average response time of the dashboard API?", "answer": "Around 250ms",
        "source_chat_ids": {"original_info": [2], "updated_info": [4]}, "rubric": ["250ms"]}],
}


def test_beam_questions_name_the_messages_that_answer_them(tmp_path: Path) -> None:
    chat = tmp_path / "100K" / "1"
    (chat / "probing_questions").mkdir(parents=True)
    (chat / "chat.json").write_text("[]")  # BEAM's own code reads the truncated chat where there is one
    (chat / "chat_trunecated.json").write_text(json.dumps(BEAM_CHAT))
    (chat / "probing_questions" / "probing_questions.json").write_text(json.dumps(BEAM_PROBES))
    (history,) = load_histories(tmp_path / "100K")  # the folder of chats, as BEAM ships chats/100K
    assert (history.id, history.unit) == ("100K/1", "turn")
    assert [t.unit for t in history.turns] == ["0", "1", "2", "3", "4", "5"]
    assert [t.session for t in history.turns] == ["1", "1", "1", "1", "2", "2"]
    assert history.turns[0].content == "I'm building a budget tracker in Flask, due March 29."  # no "->-> 1,1"
    assert (history.turns[0].speaker, history.turns[1].speaker) == ("", "assistant")
    assert history.turns[4].created_at - history.turns[3].created_at > 30 * 86400  # April's batch after March's
    (question,) = history.questions
    assert question.evidence == {"4"}  # a knowledge update: the message with the update, not the old figure
    assert question.answer == "Around 250ms"
    assert [t.content for t in history.turns if t.unit in question.evidence] == [
        "After the caching tweaks the dashboard API averages 250ms."]
    assert history.left_out == 1  # the abstention question names no message
    assert [h.id for h in load_histories(chat)] == ["100K/1"]  # one chat folder reads the same
