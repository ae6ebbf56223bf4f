"""Real users: MovieLens ml-latest-small (GroupLens, 2018) as a LaMP-3 style rating task and a LaMP-2 style
tagging task, split by time per user (a user's latest items are the queries, so nothing from the future leaks
into a profile), converted to LaMP questions so every method runs on them unchanged.

- movielens-rating: the profile is the user's earlier (movie, genres, rating); predict the 1-5 rating (half stars
  round up) of each of their last three movies.
- movielens-tag: the profile is the user's earlier (movie, tag); predict the tag a user gives a movie they tag
  later, out of that user's own tag vocabulary (their 15 most used tags); one query per movie.

The data lives in ../shared/data/movielens-small beside the project (PLLM_MOVIELENS_DIR or --data elsewhere).
"""

from __future__ import annotations

import csv
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from pllm.bench.lamp import Question
from pllm.bench.tasks.base import Task, register_task
from pllm.bench.tasks.lamp2 import LaMP2
from pllm.bench.tasks.lamp3 import LaMP3
from pllm.errors import UsageError

RATING_INSTRUCTION = ("What is the score of the following movie on a scale of 1 to 5? just answer with 1, 2, 3, 4, "
                      "or 5 without further explanation. movie: ")
TAG_INSTRUCTION = ("Which tag does this movie relate to among the following tags? Just answer with the tag name "
                   "without further explanation. tags: [{tags}] description: ")
PROFILE_ITEMS = 50  # most recent items kept in a rating profile
QUERIES = 3
MAX_TAGS = 15


def _read(folder: Path, name: str) -> list[dict[str, str]]:
    path = folder / name
    if not path.is_file():
        raise UsageError(f"{path}: not found; point --data (or PLLM_MOVIELENS_DIR) at the ml-latest-small folder")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _movies(folder: Path) -> dict[str, str]:
    return {m["movieId"]: f"{m['title']} ({m['genres'].replace('|', ', ')})" for m in _read(folder, "movies.csv")}


def _date(timestamp: str) -> str:
    return datetime.fromtimestamp(int(timestamp), UTC).strftime("%Y-%m-%d")


def _pick(users: list[str], n: int | None, seed: int) -> list[str]:
    users = sorted(users, key=int)
    return users if n is None or n >= len(users) else sorted(random.Random(seed).sample(users, n), key=int)


def star(rating: str) -> str:
    """0.5-5 stars in halves -> 1..5 (halves round up)."""
    return str(min(5, max(1, int(float(rating) + 0.5))))


class RealUsers(Task):
    """A task over real MovieLens users: loaded from the data folder, never generated."""

    def synthetic(self, seed: int, size: str) -> list[Question]:
        raise UsageError(f"{self.name} reads the real MovieLens data; drop --synthetic")

    def load(self, folder: Path, users: int | None = None, seed: int = 0) -> list[Question]:
        raise NotImplementedError


@register_task
class MovieLensRating(RealUsers, LaMP3):
    name = "movielens-rating"
    lamp = "LaMP_3"
    augmentable = "movies (title, year and genres), each with the 1-5 stars this person gave it"

    def load(self, folder: Path, users: int | None = None, seed: int = 0) -> list[Question]:
        movies = _movies(folder)
        by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
        for r in _read(folder, "ratings.csv"):
            by_user[r["userId"]].append(r)
        eligible = [u for u, rs in by_user.items() if len(rs) >= 20 + QUERIES]
        out = []
        for u in _pick(eligible, users, seed):
            history = sorted(by_user[u], key=lambda r: (int(r["timestamp"]), int(r["movieId"])))
            past, queries = history[:-QUERIES], history[-QUERIES:]
            profile = [{"id": f"{u}-{r['movieId']}", "text": movies[r["movieId"]], "score": star(r["rating"]),
                        "date": _date(r["timestamp"])} for r in past[-PROFILE_ITEMS:]]
            for r in queries:
                out.append(Question(id=f"{u}-{r['movieId']}", input=RATING_INSTRUCTION + movies[r["movieId"]],
                                    profile=profile, gold=star(r["rating"]), user=f"ml{u}"))
        return out


@register_task
class MovieLensTag(RealUsers, LaMP2):
    name = "movielens-tag"
    lamp = "LaMP_2"
    augmentable = "movies (title, year and genres), each with the tag this person gave it"

    def load(self, folder: Path, users: int | None = None, seed: int = 0) -> list[Question]:
        movies = _movies(folder)
        events: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
        for t in _read(folder, "tags.csv"):
            events[t["userId"]].append((int(t["timestamp"]), t["movieId"], t["tag"].strip().lower()))
        per_user: dict[str, list[Question]] = {}
        for u, evs in events.items():
            evs.sort()
            # Movies in the order the user first tagged them; the last ones whose tag the user used before are queries.
            first_seen: dict[str, int] = {}
            for ts, movie, _ in evs:
                first_seen.setdefault(movie, ts)
            order = sorted(first_seen, key=lambda m: first_seen[m])
            questions: list[Question] = []
            for movie in reversed(order):
                if len(questions) == QUERIES:
                    break
                cutoff = first_seen[movie]
                past = [e for e in evs if e[0] < cutoff]
                vocab = [t for t, _ in Counter(t for _, _, t in past).most_common(MAX_TAGS)]
                golds = [t for _, m, t in evs if m == movie and t in vocab]
                if len(vocab) < 3 or not golds:
                    continue
                gold = min(golds, key=vocab.index)  # of its tags, the one the user uses most
                profile = [{"id": f"{u}-{m}-{n}", "description": movies.get(m, m), "tag": t, "date": _date(str(ts))}
                           for n, (ts, m, t) in enumerate(past) if t in vocab]
                text = TAG_INSTRUCTION.format(tags=", ".join(vocab)) + movies.get(movie, movie)
                questions.append(Question(id=f"{u}-{movie}", input=text, profile=profile, gold=gold, user=f"ml{u}"))
            if questions:
                per_user[u] = questions[::-1]
        return [q for u in _pick(list(per_user), users, seed) for q in per_user[u]]
