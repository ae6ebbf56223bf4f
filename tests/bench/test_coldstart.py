"""coldstart and the --history sweep: clusters of training users with a head each, chosen for a new user by what
they write; every size of history evaluated on the same users against the task model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pllm.bench.data import low_data, questions_for
from pllm.bench.methods.coldstart import build_clusters
from pllm.bench.sweep import history_sizes, run_history_sweep
from pllm.bench.tasks.base import get_task
from pllm.config import get_settings
from pllm.errors import UsageError
from pllm.lm.head import fit_head


def two_kinds_of_people(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """People of two kinds: what they write points one of two ways, and the same words mean a different label to
    each kind (label = sign of feature 2, flipped for the second kind)."""
    rng = np.random.default_rng(seed)
    rows, labels, people = [], [], []
    for person in range(40):
        kind = person % 2
        for _ in range(20):
            v = rng.normal(0, 0.3, 8)
            v[kind] += 3.0  # the kind shows in what they write
            rows.append(v)
            labels.append(int((v[2] > 0) != bool(kind)))
            people.append(f"p{person}")
    return np.array(rows, dtype=np.float32), np.array(labels), people


def test_people_who_write_alike_share_a_head_that_fits_them() -> None:
    x, y, people = two_kinds_of_people()
    population = fit_head(x, y, ["no", "yes"], 1.0, False, threads=1)
    clusters = build_clusters(population, x, x, y, people, 2, 1e-3, threads=1)
    assert len(clusters.heads) == 2
    assert sorted(np.argmax(clusters.centroids, axis=1)[:2].tolist()) == [0, 1]  # one cluster per kind
    test_x, test_y, _ = two_kinds_of_people(seed=1)
    for kind in (0, 1):
        mine = [r for r in range(len(test_y)) if (r // 20) % 2 == kind][:200]
        head = clusters.head_for(test_x[mine[:3]])  # chosen by three of their items
        cluster_acc = float((np.argmax(head.log_probs(test_x[mine]), 1) == test_y[mine]).mean())
        population_acc = float((np.argmax(population.log_probs(test_x[mine]), 1) == test_y[mine]).mean())
        assert cluster_acc > population_acc + 0.2, (kind, cluster_acc, population_acc)
    single = build_clusters(population, x, x, y, people, 1, 1e-3, threads=1)
    assert single.heads == [population]  # one cluster: the population head itself


def test_history_sizes_and_a_user_with_no_items() -> None:
    assert history_sizes("8,0,2") == [0, 2, 8] and history_sizes("4") == [4] and history_sizes(None) is None
    for bad in ("a,b", "-1", "2,2", ""):
        with pytest.raises(UsageError):
            history_sizes(bad)
    task, settings = get_task("lamp3"), get_settings()
    data = questions_for(task, settings, data=None, synthetic="small", users=2, seed=0)
    assert all(q.profile == [] for q in low_data(data, 0).evaluated)
    full = {q.id: len(q.profile) for q in data.evaluated}
    assert all(len(q.profile) == min(2, full[q.id]) for q in low_data(data, 2).evaluated)


@pytest.mark.slow
def test_the_sweep_puts_coldstart_beside_the_task_model_at_each_size(monkeypatch: pytest.MonkeyPatch) -> None:
    from pllm.bench.methods import head

    trained: list[object] = []
    original = head.train_head
    monkeypatch.setattr(head, "train_head", lambda env: trained.append(env) or original(env))
    task, settings = get_task("lamp3"), get_settings()
    data = questions_for(task, settings, data=None, synthetic="small", users=3, seed=0)
    result = run_history_sweep(task, data, [0, 2], ["coldstart"], settings)
    assert len(trained) == 1  # on the training users alone: once for every size
    rows = {(r["history"], r["method"]): r for r in result["rows"]}
    assert set(rows) >= {(0, "coldstart"), (0, "task"), (2, "coldstart"), (2, "task")}
    assert rows[(0, "task")]["value"] == rows[(2, "task")]["value"]  # the task model ignores the user's items
    for size in (0, 2):
        low, high = rows[(size, "coldstart")]["vs_task"]
        assert low <= high and rows[(size, "task")]["vs_task"] is None
    learned = rows[(0, "coldstart")]["learned"]
    assert learned["clusters"] >= 1 and "out-of-fold score, k=1 pull=inf" in learned
    assert Counter(r["history"] for r in result["rows"]) == {0: 2, 2: 2}  # task and coldstart at each size
