"""Real people's data as LaMP folders: reviews with their stars (LaMP-3 style) and articles with their category per
author (LaMP-2 news style), split by time per person and into two disjoint halves of the evaluated people.

The sources are public samples that this repository does not ship (their terms forbid redistributing them, or they
are not ours to): docs/BENCHMARKS.md names each file with its sha256. Converted here, a folder runs with
`pllm eval --task lamp3 --data DIR` like any LaMP folder:

    python -m pllm.bench.realdata yelp yelp.csv data/dev/yelp              # writes data/dev/yelp-a, data/dev/yelp-b
    python -m pllm.bench.realdata huffpost News_Category_Dataset_v3.json data/dev/news
    python -m pllm.bench.realdata yelp yelp.csv data/dev/yelp-small --train 400 --profile 4
    python -m pllm.bench.realdata goodreads young_adult_10000.json.gz fantasy_10000.json.gz data/dev/goodreads

The protocol, by construction:
- a person is evaluated when they have at least `min_items` items: their latest item is the query (their latest
  `queries`, each a question of its own) and the items before it are its profile (at most `profile`, the most
  recent), so nothing from their future is in it;
- the evaluated people are split in two halves by a seeded shuffle (`-a` and `-b`): design on one, confirm on the
  other (`--whole`: one folder evaluating all of them); each folder's train split is every item of the people it
  does not evaluate (each with that person's earlier items as its profile), so train and dev people are disjoint
  (`--train N` keeps a seeded N of them).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import random
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pllm.bench.lamp import Question, write_outputs, write_questions
from pllm.bench.tasks.lamp3 import INSTRUCTION as RATING_INSTRUCTION
from pllm.errors import UsageError

NEWS_INSTRUCTION = ("Which category does this article relate to among the following categories? Just answer with "
                    "the category name without further explanation. categories: [{categories}] article: ")
MAX_WORDS = 400  # a review longer than this is cut (a few Yelp reviews run to 900 words)


@dataclass(frozen=True)
class Record:
    """One item of one person: when, its content fields, and the LaMP input it makes as a query."""

    user: str
    date: str
    key: str  # unique and stable: the order of items of the same day
    item: dict[str, Any]  # the LaMP profile fields (without id and date)
    query: str  # the input when this item is the one asked about
    gold: str


@dataclass(frozen=True)
class Source:
    task: str  # LaMP task id of the folders
    read: Callable[[Path], list[Record]]


def _cut(text: str) -> str:
    words = text.split()
    return " ".join(words[:MAX_WORDS])


STARS = {"1", "2", "3", "4", "5"}


def _review(user: str, date: str, key: str, text: str, stars: str) -> Record:
    """A review as a rating question (LaMP-3): its text asked about, its stars the answer."""
    return Record(user, date, key, {"text": text, "score": stars}, RATING_INSTRUCTION + text, stars)


def read_yelp(path: Path) -> list[Record]:
    """Kaggle's 10,000-review sample of the Yelp Dataset Challenge (Phoenix, 2013): user_id, stars, text, date."""
    out = []
    with _open(path) as f:
        for row in csv.DictReader(f):
            text, stars = _cut(row["text"]), row["stars"].strip()
            if not text or stars not in STARS:
                continue
            out.append(_review(row["user_id"], row["date"], row["review_id"], text, stars))
    return out


def read_goodreads(path: Path) -> list[Record]:
    """UCSD's Goodreads reviews (Wan & McAuley 2018), one JSON object a line, gzipped or not: user_id, rating (0: the
    reader gave none, dropped), review_text, date_added."""
    out = []
    with _open(path) as f:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            text, stars = _cut(row["review_text"]), str(row["rating"]).strip()
            if len(text) < 20 or stars not in STARS:
                continue
            added = datetime.strptime(row["date_added"], "%a %b %d %H:%M:%S %z %Y")
            out.append(_review(row["user_id"], added.strftime("%Y-%m-%d %H:%M:%S"), row["review_id"], text, stars))
    return out


def read_huffpost(path: Path) -> list[Record]:
    """HuffPost's News Category Dataset (Misra 2022), one JSON object a line: the byline is the person."""
    rows = []
    with _open(path) as f:
        for n, line in enumerate(f):
            if line.strip():
                rows.append(json.loads(line))
                rows[-1]["_n"] = n
    categories = ", ".join(sorted({r["category"].lower() for r in rows}))
    out = []
    for r in rows:
        author = r["authors"].strip()
        if not author or not r["headline"].strip():
            continue
        text = f"{r['headline'].strip()}. {r['short_description'].strip()}".strip()
        out.append(Record(author, r["date"], f"{r['date']}-{r['_n']:06d}",
                          {"title": r["headline"].strip(), "text": r["short_description"].strip(),
                           "category": r["category"].lower()},
                          NEWS_INSTRUCTION.format(categories=categories) + text, r["category"].lower()))
    return out


def _open(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


SOURCES = {"yelp": Source("LaMP_3", read_yelp), "goodreads": Source("LaMP_3", read_goodreads),
           "huffpost": Source("LaMP_2", read_huffpost)}


def _user_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:12]  # a byline or a site's id, not needed in the files


def _question(records: list[Record], at: int, profile: int) -> Question:
    """The person's item `at` as a query, the items before it (the most recent `profile`) as its profile."""
    record, uid = records[at], _user_id(records[at].user)
    history = [{"id": f"{uid}-{r.key}", **r.item, "date": r.date} for r in records[max(0, at - profile):at]]
    return Question(id=f"{uid}-{record.key}", input=record.query, profile=history, gold=record.gold, user=uid)


def convert(source: str, paths: list[Path], out: Path, *, min_items: int = 5, profile: int = 4,
            train: int | None = None, seed: int = 0, whole: bool = False,
            queries: int = 1) -> dict[str, dict[str, int]]:
    """Write `out`-a and `out`-b (or, `whole`, one folder `out` evaluating everyone eligible) from one file or
    several (an item in more than one, by its key, counts once); returns their sizes."""
    if source not in SOURCES:
        raise UsageError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    spec = SOURCES[source]
    people: dict[str, list[Record]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for path in paths:
        try:
            records = spec.read(path)
        except (KeyError, ValueError, TypeError, OSError) as exc:  # a malformed line or field, a broken gzip
            raise UsageError(f"{path}: not a {source} file as expected ({type(exc).__name__}: {exc})") from None
        for record in records:
            if (record.user, record.key) not in seen:
                seen.add((record.user, record.key))
                people[record.user].append(record)
    for records in people.values():
        records.sort(key=lambda r: (r.date, r.key))
    evaluated = sorted(u for u, rs in people.items() if len(rs) >= min_items)
    if len(evaluated) < 2:
        raise UsageError(f"{', '.join(map(str, paths))}: fewer than two people with {min_items} items")
    random.Random(seed).shuffle(evaluated)
    halves = {"a": evaluated[: len(evaluated) // 2], "b": evaluated[len(evaluated) // 2:]}
    sizes = {}
    for name, users in ({"": evaluated} if whole else halves).items():
        folder = out.with_name(f"{out.name}-{name}") if name else out
        folder.mkdir(parents=True, exist_ok=True)
        dev = [_question(people[u], len(people[u]) - k, profile) for u in sorted(users)
               for k in range(min(queries, len(people[u]) - min_items + 1), 0, -1)]
        chosen = set(users)
        pool = [_question(rs, n, profile) for u, rs in sorted(people.items()) if u not in chosen
                for n in range(len(rs))]
        if train is not None and train < len(pool):
            pool = sorted(random.Random(seed).sample(pool, train), key=lambda q: q.id)
        for split, questions in (("dev", dev), ("train", pool)):
            write_questions(folder / f"{split}_questions.json", questions)
            write_outputs(folder / f"{split}_outputs.json", spec.task, {q.id: str(q.gold) for q in questions})
        sizes[folder.name] = {"dev_users": len({q.user_id for q in dev}), "dev_questions": len(dev),
                              "train_questions": len(pool)}
    return sizes


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m pllm.bench.realdata", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=sorted(SOURCES))
    parser.add_argument("file", type=Path, nargs="+", help="the source's file (several: joined, duplicates once)")
    parser.add_argument("out", type=Path, help="folder prefix: OUT-a and OUT-b are written")
    parser.add_argument("--min-items", type=int, default=5, help="items a person needs to be evaluated")
    parser.add_argument("--profile", type=int, default=4, help="earlier items kept as a query's profile")
    parser.add_argument("--train", type=int, default=None, help="keep a seeded N of the train questions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=1, help="a person's latest N items are asked about, each "
                        "with the items before it as its profile (at least --min-items - 1 stay before the first)")
    parser.add_argument("--whole", action="store_true", help="one folder OUT evaluating every eligible person "
                        "(their train split: only the others), instead of two halves")
    args = parser.parse_args(argv)
    try:
        sizes = convert(args.source, args.file, args.out, min_items=args.min_items, profile=args.profile,
                        train=args.train, seed=args.seed, whole=args.whole, queries=args.queries)
    except UsageError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(2)  # bad input, as the pllm command line exits on it
    sys.stdout.write(json.dumps(sizes) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
