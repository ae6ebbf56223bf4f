"""The router on a real encrypted vault (the latency bench's made-up user) and the real embedder: personal
questions stay on the device, domain questions go to their expert, general ones follow the local model's
confidence; no cloud means local, said so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pllm.bench.latency import build_vault
from pllm.config import get_settings
from pllm.expert.domains import load_domain, packaged_domains
from pllm.lm.embeddings import Embedder, need_embedder
from pllm.personal.router import ExpertInfo, Router
from pllm.personal.vault import Vault


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return need_embedder("the router tests")


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vault]:
    made_up, _ = build_vault(tmp_path_factory.mktemp("router") / "vault.db", "router-test", questions=0)
    yield made_up
    made_up.close()


def router_for(vault: Vault, embedder: Embedder) -> Router:
    return Router.for_vault(get_settings(route_domain_threshold=0.25, route_domain_margin=0.0), vault, embedder,
                            experts())


def experts() -> list[ExpertInfo]:
    return [ExpertInfo(name, tuple(load_domain(name).profile_texts())) for name in packaged_domains()]


def test_personal_questions_stay_and_domain_questions_go_to_their_expert(vault: Vault, embedder: Embedder) -> None:
    assert router_for(vault, embedder).route("What did the physio say about my knee?").reason.startswith(
        "about the user: calls 'my knee' theirs")  # a note of hers mentions the knee
    assert router_for(vault, embedder).route("Why is my laptop so slow?").target == "expert"  # none mentions one
    # The experts here carry only their description and examples (a registered one also carries the questions it
    # trained on, which the default threshold and margin are tuned with): lower ones for these shorter lists.
    router = router_for(vault, embedder)
    for question in ("What is my cat called?", "What am I allergic to?", "Did I renew my certificate?",
                     "Send the plan to kari.nordmann@example.com please"):
        route = router.route(question)
        assert route.target == "local" and route.reason.startswith("about the user"), (question, route)
    for question, expert in (("What is the best way to caramelise onions?", "cooking"),
                             ("My laptop keeps freezing, what should I do?", "it"),
                             ("Should savings go into an index fund or pay off a loan early?", "finance"),
                             ("How much vitamin C should an adult take when they have a cold?", "health")):
        route = router.route(question)
        assert (route.target, route.expert) == ("expert", expert), (question, route)
        assert route.destination == f"expert:{expert}" and route.scores[expert] >= 0.25
    # Kari bakes rye bread and writes about it: a bread question is too close to her own notes to leave the device.
    bread = router.route("How long should rye dough prove before baking?")
    assert bread.target == "local" and "to one of their items" in bread.reason, bread


def test_general_questions_follow_the_local_models_confidence(vault: Vault, embedder: Embedder) -> None:
    router = Router.for_vault(get_settings(), vault, embedder, experts())
    sure = router.route("Who painted the Mona Lisa?", confidence=lambda: -0.3)
    unsure = router.route("Who painted the Mona Lisa?", confidence=lambda: -2.5)
    assert sure.target == "local" and unsure.target == "cloud"
    assert "-2.50 < -1.00" in unsure.reason and unsure.scores["confidence"] == -2.5
    # Asked of Kari's records without a pronoun, and no personal rule fires; but it is as close to her facts
    # ("home town: Tromso") as to any general question, so it does not go to the T-model, however unsure.
    home = router.route("Which town is home?", confidence=lambda: -5.0)
    assert home.target == "local" and home.reason.startswith("not clearly general"), home
    assert home.scores["general"] - home.scores["personal"] < 0.07 <= unsure.scores["general"] - unsure.scores[
        "personal"]


def test_with_no_cloud_everything_is_answered_here_and_the_reason_says_why(vault: Vault, embedder: Embedder
                                                                           ) -> None:
    router = Router.for_vault(get_settings(route_domain_threshold=0.25, route_domain_margin=0.0), vault, embedder,
                              experts(), cloud=False)
    route = router.route("How much vitamin C should an adult take when they have a cold?", confidence=lambda: -5.0)
    assert route.target == "local" and route.reason.endswith("but there is no cloud to ask")
    assert router.route("Who painted the Mona Lisa?", confidence=lambda: -5.0).target == "local"


def test_a_question_closer_to_general_questions_than_to_any_expert_is_no_experts(vault: Vault, embedder: Embedder
                                                                                 ) -> None:
    """"Who invented the computer?" is as close to the IT expert's texts as some IT questions are, and much closer
    to the packaged general questions: the margin keeps it general; without the margin it would go to IT."""
    question = "Who invented the computer?"
    without = Router.for_vault(get_settings(route_domain_threshold=0.2, route_domain_margin=-1.0), vault, embedder,
                               experts()).route(question)
    assert (without.target, without.expert) == ("expert", "it")
    route = Router.for_vault(get_settings(route_domain_threshold=0.2, route_domain_margin=0.0), vault, embedder,
                             experts()).route(question, confidence=lambda: -0.2)
    assert route.target == "local" and "margin < +0.00" in route.reason, route
    assert route.scores["general"] > route.scores["it"] + 0.1
