"""Real people's data as LaMP folders: split by time per person, evaluated people in two disjoint halves, train and
dev people apart, and the folders load as any LaMP folder does."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pllm.bench.lamp import load_dataset
from pllm.bench.realdata import convert
from pllm.errors import UsageError


def yelp_csv(path: Path) -> None:
    rows = []
    for person, count in (("ann", 6), ("bob", 5), ("cid", 7), ("dee", 5), ("eve", 2), ("fay", 1)):
        for n in range(count):
            rows.append({"business_id": f"b{n}", "date": f"2012-0{1 + n % 9}-1{n % 9}", "review_id": f"{person}{n}",
                         "stars": str(1 + (n + len(person)) % 5), "text": f"{person} wrote review {n}. Tasty food.",
                         "type": "review", "user_id": person, "cool": "0", "useful": "0", "funny": "0"})
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_reviews_become_two_disjoint_halves_split_by_time(tmp_path: Path) -> None:
    source = tmp_path / "yelp.csv"
    yelp_csv(source)
    sizes = convert("yelp", [source], tmp_path / "yelp", profile=4)
    assert sizes["yelp-a"]["dev_users"] + sizes["yelp-b"]["dev_users"] == 4  # the people with 5+ reviews
    dev_a, train_a = load_dataset(tmp_path / "yelp-a", "LaMP_3")
    dev_b, _ = load_dataset(tmp_path / "yelp-b", "LaMP_3")
    assert not {q.user_id for q in dev_a} & {q.user_id for q in dev_b}
    assert not {q.user_id for q in dev_a} & {q.user_id for q in train_a}
    assert {q.user_id for q in dev_b} <= {q.user_id for q in train_a}  # the other half trains
    for q in dev_a:
        assert len(q.profile) == 4 and q.input.startswith("What is the score of the following review")
    whole = convert("yelp", [source], tmp_path / "all", whole=True)
    assert whole == {"all": {"dev_users": 4, "dev_questions": 4, "train_questions": 3}}  # eve's 2, fay's 1


def test_the_latest_item_is_the_query_and_nothing_later_is_in_its_profile(tmp_path: Path) -> None:
    source = tmp_path / "yelp.csv"
    yelp_csv(source)
    convert("yelp", [source], tmp_path / "yelp", profile=50, whole=False)
    for half in ("yelp-a", "yelp-b"):
        dev, _ = load_dataset(tmp_path / half, "LaMP_3")
        for q in dev:
            person = q.input.split(" wrote review ")[0].rsplit(" ", 1)[-1]
            asked = int(q.input.split(" wrote review ")[1].split(".")[0])
            earlier = [int(item["text"].split(" wrote review ")[1].split(".")[0]) for item in q.profile]
            assert asked == {"ann": 5, "bob": 4, "cid": 6, "dee": 4}[person]  # their latest review is asked
            assert sorted(earlier) == list(range(asked))  # every earlier one is its profile, nothing later


def test_articles_become_a_news_category_task(tmp_path: Path) -> None:
    source = tmp_path / "news.json"
    lines = [json.dumps({"headline": f"Story {n}", "category": ["POLITICS", "SPORTS"][n % 2],
                         "short_description": f"What happened {n}.", "authors": f"Writer {n % 3}",
                         "date": f"2020-01-{1 + n:02d}", "link": ""}) for n in range(24)]
    source.write_text("\n".join(lines) + "\n")
    convert("huffpost", [source], tmp_path / "news", profile=50)
    dev, train = load_dataset(tmp_path / "news-a", "LaMP_2")
    assert dev and train and "categories: [politics, sports]" in dev[0].input
    assert {item["category"] for q in dev for item in q.profile} <= {"politics", "sports"}


def test_a_missing_or_thin_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        convert("yelp", [tmp_path / "nope.csv"], tmp_path / "out")
    (tmp_path / "thin.csv").write_text("business_id,date,review_id,stars,text,type,user_id\n")
    with pytest.raises(UsageError, match="fewer than two people"):
        convert("yelp", [tmp_path / "thin.csv"], tmp_path / "out")
    (tmp_path / "broken.json").write_text('{"user_id": "a", "rating": 5\nnot json\n')
    with pytest.raises(UsageError, match=r"broken\.json: not a goodreads file"):
        convert("goodreads", [tmp_path / "broken.json"], tmp_path / "out")
    (tmp_path / "fake.json.gz").write_text("plain text, not gzip")
    with pytest.raises(UsageError, match=r"fake\.json\.gz: not a goodreads file"):
        convert("goodreads", [tmp_path / "fake.json.gz"], tmp_path / "out")


def test_several_queries_a_person_each_with_only_what_came_before(tmp_path: Path) -> None:
    source = tmp_path / "yelp.csv"
    yelp_csv(source)
    sizes = convert("yelp", [source], tmp_path / "all", whole=True, queries=2, profile=50)
    assert sizes["all"]["dev_questions"] == 6  # two of ann's and cid's; bob and dee keep 4 before their one
    dev, _ = load_dataset(tmp_path / "all", "LaMP_3")
    for q in dev:
        asked = int(q.input.split(" wrote review ")[1].split(".")[0])
        assert sorted(int(i["text"].split(" wrote review ")[1].split(".")[0]) for i in q.profile) == list(range(asked))


def test_goodreads_files_join_once_drop_unrated_and_order_by_the_date_added(tmp_path: Path) -> None:
    import gzip

    def review(person: str, n: int, rating: int) -> str:
        # Goodreads writes dates as "Wed Jan 13 13:38:25 -0800 2010"; n runs over months so the order is by date
        return json.dumps({"user_id": person, "book_id": str(n), "review_id": f"{person}-{n}", "rating": rating,
                           "review_text": f"{person} on book {n}: a fine read, slow middle.",
                           "date_added": f"Mon {['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul'][n]} 01 10:00:00 "
                                         "-0800 2012"})

    first = [review(p, n, 1 + n % 5) for p in ("ann", "bob", "cid") for n in range(6)]
    second = [review("dee", n, 0 if n == 2 else 3) for n in range(7)] + first[:4]  # 4 reviews in both files
    for name, lines in (("ya.json.gz", first), ("fantasy.json.gz", second)):
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as f:
            f.write("\n".join(reversed(lines)) + "\n")  # out of date order on purpose
    sizes = convert("goodreads", [tmp_path / "ya.json.gz", tmp_path / "fantasy.json.gz"], tmp_path / "gr",
                    whole=True, profile=50)
    assert sizes["gr"]["dev_users"] == 4 and sizes["gr"]["dev_questions"] == 4
    dev, _ = load_dataset(tmp_path / "gr", "LaMP_3")
    by_person = {q.input.split(" on book ")[0].rsplit(" ", 1)[-1]: q for q in dev}
    assert "book 6" in by_person["dee"].input and len(by_person["dee"].profile) == 5  # the unrated one is gone
    assert len(by_person["ann"].profile) == 5 and "book 5" in by_person["ann"].input  # each shared review once
    assert [item["date"][:7] for item in by_person["ann"].profile] == [f"2012-0{m}" for m in range(1, 6)]
