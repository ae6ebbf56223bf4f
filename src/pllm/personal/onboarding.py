"""A new user's first conversation: a few questions (name, work, people, interests) whose answers are stored as the
user's own statements, so the profile and retrieval use them from the next request on.

Offered by `pllm chat` (on a terminal) and the page only while the vault is empty; every question may be left
blank, and skipping all of them writes nothing.

    if needs_onboarding(vault):
        learned = onboard(vault, {"name": "Mara", "work": "a nurse at the city hospital"})
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from pllm.errors import UsageError
from pllm.personal.ingest import Record, store_records
from pllm.personal.profile import extract_facts
from pllm.personal.vault import Vault

SOURCE = "onboarding"  # the documents and facts the answers became
MAX_ANSWER_CHARS = 300


@dataclass(frozen=True)
class Question:
    key: str  # the answer's name in the API, and the fact it becomes
    fact: str  # the profile fact's key
    text: str  # what is asked
    statement: str  # the answer in the user's own voice, stored as their words ({} is the answer)

    def as_dict(self) -> dict[str, str]:
        return {"key": self.key, "question": self.text}


QUESTIONS = (
    Question("name", "name", "What should I call you?", "My name is {}."),
    Question("work", "works as", "What do you do: your work, or what you study?", "I work as {}."),
    Question("people", "people", "Who are the people you will mention most (partner, family, friends, colleagues)?",
             "The people in my life: {}."),
    Question("interests", "interests", "What are you into, or what would you like help with?",
             "I am interested in {}."),
)
BY_KEY = {q.key: q for q in QUESTIONS}


def needs_onboarding(vault: Vault) -> bool:
    """Only a vault that holds nothing yet: no texts, no conversation, no facts."""
    return all(vault.count(table) == 0 for table in ("documents", "interactions", "profile_facts"))


# What people put before the answer itself; the fact keeps what follows.
LEAD_INS = {
    "name": r"(?:my name is|my name's|i am|i'm|im|call me|it's|it is)\s+",
    "work": r"(?:i work as|i work in|i work at|i am|i'm|im)\s+(?:an?\s+)?",
    "people": r"(?:they are|they're|there's|there is)\s+",
    "interests": r"(?:i am interested in|i'm interested in|i'm into|i am into|i like|i love|i enjoy)\s+",
}


def answer_value(question: Question, answer: str) -> str:
    """The answer without its lead-in ("I'm Mara" -> "Mara"; "I'm a nurse" -> "nurse"), a name capitalised."""
    value = re.sub(r"^" + LEAD_INS[question.key], "", answer.strip(), flags=re.I).rstrip(".!? ")
    if question.key == "name":
        value = " ".join(w[:1].upper() + w[1:] for w in value.split())
    return value or answer.strip()


def _statement(question: Question, answer: str) -> str:
    """The answer as the user would say it: a sentence of their own stays as written ("I'm a nurse."), a bare
    answer ("a nurse") is put into the question's statement."""
    first = answer.split(maxsplit=1)[0].lower()
    if first in ("i", "i'm", "im", "we", "we're") and question.key != "name":
        return answer if answer[-1] in ".!?" else answer + "."
    value = answer_value(question, answer) if question.key == "name" else answer.rstrip(".!? ")
    return question.statement.format(value)


def onboard(vault: Vault, answers: dict[str, str]) -> list[tuple[str, str]]:
    """Store the answers given (blank ones skipped) as the user's own statements and as profile facts; the facts
    learned, as (key, value). A name also becomes the vault's name when it has none."""
    unknown = sorted(set(answers) - set(BY_KEY))
    if unknown:
        raise UsageError(f"no onboarding question {unknown[0]!r}: the questions are {', '.join(BY_KEY)}")
    given = {k: " ".join(v.split()) for k, v in answers.items() if v and v.strip()}
    too_long = [k for k, v in given.items() if len(v) > MAX_ANSWER_CHARS]
    if too_long:
        raise UsageError(f"the answer to {too_long[0]!r} is over {MAX_ANSWER_CHARS} characters")
    now = time.time()
    learned: list[tuple[str, str]] = []
    for key, answer in given.items():
        question = BY_KEY[key]
        statement = _statement(question, answer)
        store_records(vault, [Record(SOURCE, SOURCE, statement, now)], SOURCE)  # learns what its patterns read
        stated = extract_facts(statement)
        learned += stated
        if question.fact not in dict(stated):  # an answer the patterns do not read is still the fact asked for
            value = answer_value(question, answer)
            vault.upsert_fact(question.fact, value, source=f"document:{SOURCE}", confidence=0.9, stated_at=now)
            learned.append((question.fact, value))
        name = dict(stated).get("name")
        if name and not vault.user_name:
            vault.set_meta("name", name)
    return learned
