"""Profile statistics with no model at all: the floor every model-based method has to clear.

- stats: the user's most frequent label; the user's mean rating; where labels stand for texts (LaMP-1's
  references), the text sharing most words with the user's profile; for generation, the output of the user's most
  similar past item (nearest by BM25), copied.
- majority: the most frequent label (mean rating) over every evaluated user's history (the profile items before
  their earliest evaluated query).
- biases (ratings): the recommender's baseline predictor, mean + the item's bias + the user's bias, each shrunk
  toward 0 by its count (the item's from the training users' ratings of the same content, the user's from their
  own ratings less their items' biases): the user's mean, corrected for what they happened to rate.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

import numpy as np

from pllm.bench.lamp import Question, by_user, shared_history
from pllm.bench.methods.base import Method, register_method
from pllm.bench.methods.head import Memory
from pllm.bench.methods.rag import nearest_items
from pllm.lm.head import nearest_label
from pllm.personal.text import content_words, light_stem


def label_counts(task: Any, profile: list[dict[str, Any]]) -> Counter[str]:
    return Counter(task.item_output(item) for item in profile)


@register_method
class ProfileStats(Method):
    name = "stats"
    uses_model = False

    def predict(self, q: Question) -> str:
        if self.task.kind == "rating":
            scores = [float(self.task.item_output(i)) for i in q.profile]
            return str(round(statistics.mean(scores))) if scores else "3"
        if self.task.kind == "generation":
            near = nearest_items(self.task, q, 1)
            return self.task.item_output(near[0]) if near else ""
        labels = self.task.labels(q)
        if self.task.option_texts(q) != labels:  # labels stand for texts (LaMP-1's [1], [2]): judge the texts
            return _closest_option(self.task, q)
        counts = label_counts(self.task, q.profile)
        return max(labels, key=lambda label: (counts[label], -labels.index(label)))


def _closest_option(task: Any, q: Question) -> str:
    """The label whose text shares the most (stemmed) words with the user's profile."""
    mine = Counter(light_stem(w) for item in q.profile for w in content_words(task.item_content(item)))
    overlaps = [sum(mine[light_stem(w)] for w in content_words(ref)) for ref in task.option_texts(q)]
    return task.labels(q)[max(range(len(overlaps)), key=overlaps.__getitem__)]


@register_method
class GlobalMajority(Method):
    name = "majority"
    kinds = ("classification", "rating")
    uses_model = False

    def prepare(self, questions: list[Question]) -> None:
        items = [item for qs in by_user(questions).values() for item in shared_history(qs)]
        if self.task.kind == "rating":
            self.value = str(round(statistics.mean(float(self.task.item_output(i)) for i in items)))
        else:
            self.counts = label_counts(self.task, items)

    def predict(self, q: Question) -> str:
        if self.task.kind == "rating":
            return self.value
        labels = self.task.labels(q)
        return max(labels, key=lambda label: (self.counts[label], -labels.index(label)))


USER_PRIOR = 5.0  # a user's bias counts n / (n + 5) of their mean residual: a textbook value, not tuned here


@register_method
class Biases(Method):
    name = "biases"
    kinds = ("rating",)
    uses_model = False

    def prepare(self, questions: list[Question]) -> None:
        self.memory = Memory.of(self.task, self.env.train_questions)

    def predict(self, q: Question) -> str:
        rated = [self.task.item_as_question(item, q) for item in q.profile]
        texts = [text for text, _ in rated] + [q.input]
        item_biases = self.memory.features(self.task, texts, [None] * len(texts))[:, 0]  # the query's last
        residuals = [float(label) - self.memory.mean - bias
                     for (_, label), bias in zip(rated, item_biases[:-1], strict=True)]
        user = sum(residuals) / (len(residuals) + USER_PRIOR)
        return nearest_label(np.array([self.memory.mean + user + item_biases[-1]]), self.task.labels(q))[0]
