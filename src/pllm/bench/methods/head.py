"""Methods on a classification head over the frozen model's last hidden state (lm/head.py): label and rating tasks.

- task: the task model, trained on other people (the training users' questions and profile items): the head reads
  the input where the LoRA task adapter learned the label prior (docs/BENCHMARKS.md). Generation tasks keep the
  LoRA task adapter (adapters.py).
- task+user: the head plus the user's own signal, learned from their earlier items and shrunk toward the
  population by how much data they have: for ratings their mean residual (their stars minus what the head expects
  from the text), for labels their label distribution as a prior. The shrinkage is fitted on the training users,
  with head scores out of fold (no training user is scored by a head that saw them).

The head is trained once per run and shared (Env.head); the evaluated users' features are computed when they are
asked about, never cached on disk; the training users' are kept in the cache folder, as public data.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pllm.bench.lamp import Question
from pllm.bench.methods.adapters import TaskAdapter
from pllm.bench.methods.base import SYSTEM, Env, choose_label, label_prior, register_method
from pllm.bench.methods.rag import VOTE_FLOOR, VOTE_K, neighbours
from pllm.errors import UsageError
from pllm.lm.head import (
    Head,
    HeadChoice,
    adapt_head,
    cross_validate,
    expected_rating,
    features,
    fit_head,
    nearest_label,
    predict,
    primary_score,
)

HEAD_ITEMS = 2000  # labelled items of the training users the head trains on, at most (learning curve: BENCHMARKS)
PER_PERSON = 20  # of one training person's history, the most recent items it takes
SHRINK_GRID = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, math.inf)  # k in n / (n + k); inf: no correction
PRIOR_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)  # the user's label prior's weight (label tasks)
VOTE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)  # the weight of the votes of the user's items nearest the query (label tasks)
PULL_GRID = (1e-3, 1e-2, 1e-1, 1.0, math.inf)  # the per-user adapter's pull toward the population (inf: none)
PULL_CASES = 300  # training questions that decide the pull
MEMORY_PRIOR = 3.0  # ratings by other people: their mean counts as if 3 more had given the overall mean
MEMORY_FEATURES = 2  # columns the memory adds to the hidden state


def head_prompt(env: Env, text: str) -> str:
    return env.runtime.chat_prompt([{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])


@dataclass
class Labelled:
    text: str  # the task's input for this item
    label: str
    person: str


def training_items(task: Any, env: Env) -> list[Labelled]:
    """The training users' questions and profile items as labelled inputs, distinct, at most HEAD_ITEMS.

    Whole people in a seeded order, each with their questions and the PER_PERSON most recent items before each:
    so the head sees many people, and the correction is fitted on histories as complete as evaluated users' are."""
    people: dict[str, list[Question]] = {}
    for q in env.train_questions:
        people.setdefault(q.user_id, []).append(q)
    order = sorted(people)
    random.Random(env.seed).shuffle(order)
    seen: dict[tuple[str, str], Labelled] = {}  # by person and input: two people may rate the same movie
    for person in order:
        for q in people[person]:
            if q.gold is not None:
                seen.setdefault((person, q.input), Labelled(q.input, str(q.gold), person))
            for item in q.profile[-PER_PERSON:]:
                text, label = task.item_as_question(item, q)
                seen.setdefault((person, text), Labelled(text, str(label), person))
        if len(seen) >= HEAD_ITEMS:
            break
    items = list(seen.values())[:HEAD_ITEMS]
    random.Random(env.seed).shuffle(items)  # a prefix of it is a fair sample (the diagnosis' learning curve)
    return items


@dataclass
class Memory:
    """Ratings: what the training users gave the same content (a movie several of them rated), as two features
    beside the hidden state: the shrunk mean's distance from the overall mean, and how many gave one. A review is
    written once, so on reviews both stay 0 and the head reads the text alone."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    mean: float = 0.0

    @classmethod
    def of(cls, task: Any, questions: list[Question]) -> Memory:
        memory, values, seen = cls(), [], set()
        for q in questions:
            pairs = [(q.input, q.gold)] if q.gold is not None else []
            pairs += [task.item_as_question(item, q) for item in q.profile]
            for text, label in pairs:
                key = content_key(task, text)
                if (q.user_id, key) in seen:  # a person's rating counts once, however many profiles hold it
                    continue
                seen.add((q.user_id, key))
                memory.sums[key] = memory.sums.get(key, 0.0) + float(label)
                memory.counts[key] = memory.counts.get(key, 0) + 1
                values.append(float(label))
        memory.mean = float(np.mean(values)) if values else 0.0
        return memory

    def features(self, task: Any, texts: list[str], own: list[str | None]) -> np.ndarray:
        """(n, 2); `own`: the label each text's own person gave it, left out (a training item's memory must not
        hold its own answer)."""
        rows = []
        for text, label in zip(texts, own, strict=True):
            key = content_key(task, text)
            total, count = self.sums.get(key, 0.0), self.counts.get(key, 0)
            if label is not None and count:
                total, count = total - float(label), count - 1
            rows.append([(total + MEMORY_PRIOR * self.mean) / (count + MEMORY_PRIOR) - self.mean, math.log1p(count)])
        return np.array(rows, dtype=np.float32).reshape(len(texts), 2)


def content_key(task: Any, text: str) -> str:
    return " ".join(task.content(Question("", text, [])).lower().split())


@dataclass
class Correction:
    """The user's own signal on top of the head, and how strongly it counts (fitted on training users)."""

    shrink: float = math.inf  # k: the user's signal counts n / (n + k)
    prior_weight: float = 0.0  # label tasks: weight of the user's log label prior at full strength
    vote_weight: float = 0.0  # label tasks: weight of the log votes of the user's items nearest the query

    def weight(self, n: int) -> float:
        return 0.0 if math.isinf(self.shrink) or n == 0 else n / (n + self.shrink)


@dataclass
class History:
    """A user's earlier items as the head sees them: features and labels, oldest first."""

    x: np.ndarray
    labels: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    def before(self, n: int) -> History:
        return History(self.x[:n], self.labels[:n])


@dataclass
class TaskHead:
    """The run's head, how it reads labels off, and what sits on top of it, fitted on the training users."""

    head: Head
    choice: HeadChoice
    kind: str
    correction: Correction = field(default_factory=Correction)  # task+user
    pull: float = math.inf  # user-head: the per-user adapter's pull toward the population (inf: no adapter)
    items: int = 0
    fitted_on: int = 0  # training questions with a history that the correction and the pull were fitted on
    memory: Memory | None = None  # ratings: what other people gave the same content
    vectors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # input text -> hidden state, this run
    trained_on: list[Labelled] = field(default_factory=list, repr=False)  # the training items, in the head's rows
    x: np.ndarray | None = field(default=None, repr=False)  # their inputs (what `choice.fold` indexes)
    built: dict[str, Any] = field(default_factory=dict, repr=False)  # what a method built on it, once per head

    @property
    def labels(self) -> list[str]:
        return self.head.labels

    def read(self, log_probs: np.ndarray, allowed: list[str]) -> str:
        """The answer from one row of log-probabilities, among the allowed labels."""
        if self.kind == "rating":
            return predict(log_probs[None], self.labels, self.choice.rule)[0]
        keep = [n for n, label in enumerate(self.labels) if label in allowed]
        return self.labels[keep[int(np.argmax(log_probs[keep]))]]

    def corrected(self, c: Correction, log_probs: np.ndarray, history: History, history_log_probs: np.ndarray,
                  allowed: list[str], votes: np.ndarray | None = None) -> str:
        """The head's answer moved by the user's own signal: their mean residual (ratings), or their label prior
        and the votes of their items nearest the query (labels; `votes`: log shares per head label)."""
        weight = c.weight(len(history))
        if weight == 0:
            return self.read(log_probs, allowed)
        if self.kind == "rating":
            residual = np.mean([float(label) for label in history.labels]) - \
                expected_rating(history_log_probs, self.labels).mean()
            return nearest_label(expected_rating(log_probs[None], self.labels) + weight * residual, self.labels)[0]
        counts = Counter(history.labels)
        prior = np.array([(counts[label] + 1) / (len(history) + len(self.labels)) for label in self.labels])
        scores = log_probs + c.prior_weight * weight * np.log(prior)
        if votes is not None and c.vote_weight:
            scores = scores + c.vote_weight * weight * votes
        return self.read(scores, allowed)

    def adapted(self, head: Head, pull: float, x: np.ndarray, history: History, allowed: list[str],
                threads: int = 2) -> str:
        """The answer of `head` adapted to the user's history (a per-user adapter of the head)."""
        known = [n for n, label in enumerate(history.labels) if label in self.labels]
        y = np.array([self.labels.index(history.labels[n]) for n in known], dtype=np.int64)
        mine = adapt_head(head, history.x[known], y, pull, threads=threads)
        return self.read(mine.log_probs(x[None])[0], allowed)


def inputs(env: Env, texts: list[str], own: list[str | None] | None = None) -> np.ndarray:
    """The head's input for each text: the hidden state, and for ratings what other people gave the same content."""
    th = env.head
    assert th is not None
    x = _features(env, texts, public=False)
    if th.memory is None:
        return x
    return np.hstack([x, th.memory.features(env.task, texts, own or [None] * len(texts))])


def _features(env: Env, texts: list[str], *, public: bool, label: str = "") -> np.ndarray:
    """The hidden state of each text (a row per text, in order), each distinct text computed once per run."""
    known: dict[str, np.ndarray] = env.head.vectors if env.head is not None else {}  # the run's, or this call's
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    if missing:
        cache = env.settings.paths.cache / "features" / f"{env.task.name}.npz" if public else None
        tick = (lambda done, total: env.progress(label, done, total)) if label else None
        rows = features(env.runtime, [head_prompt(env, t) for t in missing], cache=cache, on_item=tick)
        known.update(zip(missing, rows, strict=True))
    return np.stack([known[t] for t in texts]) if texts else np.zeros((0, env.runtime.llm.n_embd()))


def covers(known: list[str], labels: list[str]) -> bool:
    """Whether the head knows enough of a question's labels to answer it: at least half of them (a fixed label set
    whose rarest labels no training item had), not a user's own vocabulary it never saw."""
    return len(known) >= max(1, len(labels) / 2)


def user_history(env: Env, q: Question, items: list[dict[str, Any]]) -> History:
    """The user's items (oldest first) as `q`'s task asks them, with their features."""
    dated = sorted(range(len(items)), key=lambda n: (str(items[n].get("date", "")), n))
    pairs = [env.task.item_as_question(items[n], q) for n in dated]
    return History(inputs(env, [t for t, _ in pairs]), [str(label) for _, label in pairs])


def train_head(env: Env) -> TaskHead:
    """Once per run: the head on the training users' items, its settings chosen by cross-validation over them."""
    task = env.task
    items = training_items(task, env)
    # Ratings keep their scale's order (the median and the mean read it); classes are the training users' labels.
    labels = task.labels(Question("", "", [])) if task.kind == "rating" else sorted({i.label for i in items})
    items = [i for i in items if i.label in labels]
    if len(items) < 10 or len(labels) < 2:
        raise UsageError("the task head needs at least 10 labelled training items with two labels or more")
    hidden = _features(env, [i.text for i in items], public=True, label="task: features of the training items")
    memory = Memory.of(task, env.train_questions) if task.kind == "rating" else None
    x = hidden if memory is None else np.hstack(
        [hidden, memory.features(task, [i.text for i in items], [i.label for i in items])])
    y = np.array([labels.index(i.label) for i in items])
    threads = env.settings.threads
    free = 0 if memory is None else MEMORY_FEATURES  # other people's ratings of the same thing: not penalised
    choice = cross_validate(x, y, labels, [i.person for i in items], kind=task.kind, threads=threads, seed=env.seed,
                            free=free)
    head = fit_head(x, y, labels, choice.l2, choice.balanced, threads=threads, free=free)
    trained = TaskHead(head, choice, task.kind, items=len(items), memory=memory,
                       vectors=dict(zip([i.text for i in items], hidden, strict=True)), trained_on=items, x=x)
    _fit_user_side(env, trained, items, x)
    return trained


@dataclass
class _Case:
    """A training question with a history, scored by the head of the fold that left its person out."""

    row: int
    gold: str
    history: list[int]  # rows of its earlier items, oldest first
    allowed: list[str]
    votes: np.ndarray | None = None  # label tasks: the votes of its person's items nearest it


def vote_vector(task: Any, q: Question, labels: list[str]) -> np.ndarray:
    """Per label: the log share of the votes of the user's items nearest the query (retrieval's scores as weights,
    floored so an unvoted label keeps a chance), as `rag` counts them."""
    votes: dict[str, float] = {}
    for item, score in neighbours(task, q, VOTE_K):
        votes[task.item_output(item)] = votes.get(task.item_output(item), 0.0) + score
    total = sum(votes.values()) or 1.0
    return np.log(np.array([votes.get(label, 0.0) / total + VOTE_FLOOR for label in labels]))


def scorable_questions(env: Env, labels: list[str], items: list[Labelled]
                       ) -> Iterator[tuple[Question, int, list[str], list[int]]]:
    """The training questions the head can be scored on, each as (question, its row in `items`, its allowed labels
    the head knows, the rows of its person's profile items oldest first): what sits on top of the head is fitted on
    them."""
    row = {(i.person, i.text): n for n, i in enumerate(items)}
    for q in env.train_questions:
        allowed = [label for label in env.task.labels(q) if label in labels]
        if q.gold is None or (q.user_id, q.input) not in row or str(q.gold) not in allowed:
            continue
        dated = sorted(q.profile, key=lambda item: str(item.get("date", "")))
        history = [row[(q.user_id, t)] for t, _ in (env.task.item_as_question(i, q) for i in dated)
                   if (q.user_id, t) in row]
        yield q, row[(q.user_id, q.input)], allowed, history


def _fit_user_side(env: Env, th: TaskHead, items: list[Labelled], x: np.ndarray) -> None:
    """The correction's strength and the per-user adapter's pull that score best on the training questions that
    have a history, every score from a head that never saw that person (out of fold)."""
    task, labels, oof = env.task, th.labels, th.choice.out_of_fold
    cases = []
    for q, n, allowed, history in scorable_questions(env, labels, items):
        if history:
            votes = vote_vector(task, q, labels) if th.kind != "rating" and q.profile else None
            cases.append(_Case(n, str(q.gold), history, allowed, votes))
    th.fitted_on = len(cases)
    if not cases:
        return
    golds = [c.gold for c in cases]

    def hist(c: _Case) -> History:
        return History(x[c.history], [items[n].label for n in c.history])

    def correction_score(c: Correction) -> float:
        return primary_score([th.corrected(c, oof[case.row], hist(case), oof[case.history], case.allowed,
                                           case.votes) for case in cases], golds, th.kind)

    candidates = [Correction(k) for k in SHRINK_GRID] if th.kind == "rating" else \
        [Correction(k, w, v) for k in SHRINK_GRID for w in PRIOR_WEIGHTS for v in VOTE_WEIGHTS]
    # ties: the weaker correction (a larger k, then smaller weights)
    th.correction = max(candidates, key=lambda c: (correction_score(c), -c.weight(4), -c.prior_weight,
                                                   -c.vote_weight))
    sample = cases[:PULL_CASES]  # a per-user fit each: a seeded few hundred decide the pull

    def pull_score(pull: float) -> float:
        return primary_score([th.adapted(th.choice.fold_heads[int(th.choice.fold[c.row])], pull, x[c.row], hist(c),
                                         c.allowed, env.settings.threads) for c in sample],
                             [c.gold for c in sample], th.kind)

    th.pull = max(PULL_GRID, key=lambda p: (pull_score(p), p))  # ties: the stronger pull (closer to the population)


class HeadMethod(TaskAdapter):
    """Label and rating tasks: answers from the run's head; generation tasks: the LoRA task adapter."""

    user_side = ""  # "", "correction" (task+user) or "adapter" (user-head)

    def prepare(self, questions: list[Question]) -> None:
        if self.task.kind == "generation":
            super().prepare(questions)
            return
        if self.env.head is None:
            self.env.head = train_head(self.env)
        self._user_mb = 0.0

    def fit(self, user: str, history: list[dict[str, Any]]) -> None:
        if self.task.kind == "generation":
            super().fit(user, history)
        self._history = history

    def predict(self, q: Question) -> str:
        if self.task.kind == "generation":
            return super().predict(q)
        th = self.env.head
        assert th is not None
        allowed = [label for label in self.task.labels(q) if label in th.labels]
        if not covers(allowed, self.task.labels(q)):
            # Mostly labels no training user had (a user's own tags, subreddits): the head cannot score them, the
            # model can; with the user's label prior on top where the user side is asked for (as `profile` does).
            return choose_label(self.env, q, [], prior=label_prior(self.task, q) if self.user_side else None)
        x = inputs(self.env, [q.input])[0]
        if not self.user_side or not self._history:
            return th.read(th.head.log_probs(x[None])[0], allowed)
        history = user_history(self.env, q, self._history)
        return self.answer_with(th, self.user_side, x, history, allowed, replace(q, profile=self._history))

    def answer_with(self, th: TaskHead, side: str, x: np.ndarray, history: History, allowed: list[str],
                    asked: Question | None = None, head: Head | None = None) -> str:
        """The head's answer with the user's side: the correction, or the per-user adapter. `asked`: the query with
        the user's items as its profile, for the votes of the nearest ones (label tasks); `head`: another head to
        start from than the population's (coldstart's cluster head)."""
        head = head or th.head
        if side == "adapter":
            return th.adapted(head, th.pull, x, history, allowed, self.env.settings.threads)
        votes = vote_vector(self.task, asked, th.labels) if asked is not None and th.kind != "rating" and \
            th.correction.vote_weight and asked.profile else None
        return th.corrected(th.correction, head.log_probs(x[None])[0], history, head.log_probs(history.x),
                            allowed, votes)

    @property
    def learned(self) -> dict[str, float]:
        th = self.env.head
        if th is None or self.task.kind == "generation":
            return {}
        out = {"head_items": float(th.items), "head_l2": th.choice.l2, "head_balanced": float(th.choice.balanced),
               "head_cv_score": round(th.choice.score, 4)}
        if self.user_side == "correction":  # how much a user with four earlier items moves the head's answer
            out |= {"user_weight_at_4_items": round(th.correction.weight(4), 3), "fitted_on": float(th.fitted_on)}
            if self.task.kind != "rating":
                out |= {"user_prior_weight": th.correction.prior_weight, "user_vote_weight": th.correction.vote_weight}
        if self.user_side == "adapter":
            out |= {"user_pull": th.pull if math.isfinite(th.pull) else -1.0, "fitted_on": float(th.fitted_on)}
        return out


@register_method
class TaskModel(HeadMethod):
    name = "task"


@register_method
class TaskPlusUser(HeadMethod):
    name = "task+user"
    kinds = ("classification", "rating")
    builds_on = "task"
    user_side = "correction"


@register_method
class UserHead(HeadMethod):
    """The per-user adapter of the head: the population head fine-tuned on the user's items, pulled toward it."""

    name = "user-head"
    kinds = ("classification", "rating")
    builds_on = "task"
    user_side = "adapter"

