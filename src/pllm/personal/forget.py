"""Forgetting that reaches the adapters: what the vault forgets, no adapter keeps.

`pllm profile forget` deletes the matching items from the vault (secure delete + VACUUM): of a file, the passages
that hold the text (with `whole_file`, every passage of that file), then:
  1. retires every adapter version that trained on a forgotten item (each version records the content hashes of the
     vault items it trained on; a version from before that record existed counts as having trained on it): it leaves
     the active stack and its encrypted files are deleted;
  2. destroys an interrupted run's snapshot and checkpoint when they hold a forgotten item;
  3. by default retrains the active line without those items, if a retired version was serving.

    outcome = forget_everywhere(settings, vault, query="Seabird")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pllm.config import Settings
from pllm.files import database_files, remove_files
from pllm.personal.adapt import AdaptReport, collect, discard_pending_job, run_adaptation
from pllm.personal.adapters import AdapterStore
from pllm.personal.items import ForgetReport
from pllm.personal.vault import REKEY_SUFFIX, Vault


@dataclass
class ForgetOutcome:
    vault: ForgetReport
    retired: list[str] = field(default_factory=list)  # adapter versions whose files were deleted
    discarded_pending_run: bool = False
    active_retired: bool = False  # the version that was serving trained on a forgotten item
    retrained: AdaptReport | None = None
    retrain_skipped: str = ""  # why no retraining happened, when it did not

    def as_json(self) -> dict[str, object]:
        return {"documents": self.vault.documents, "interactions": self.vault.interactions, "facts": self.vault.facts,
                "synthetic": self.vault.synthetic,
                "retired_adapters": self.retired, "active_retired": self.active_retired,
                "discarded_pending_run": self.discarded_pending_run,
                "retrained": self.retrained.as_json() if self.retrained else None,
                "retrain_skipped": self.retrain_skipped}


def forget_everywhere(settings: Settings, vault: Vault, *, query: str | None = None, like: bool = False,
                      since: float | None = None, until: float | None = None, everything: bool = False,
                      whole_file: bool = False, retrain: bool = True,
                      on_step: Callable[[int, int, float], None] | None = None,
                      on_phase: Callable[[str], None] | None = None) -> ForgetOutcome:
    report = vault.forget(query=query, like=like, since=since, until=until, everything=everything,
                          whole_file=whole_file)
    outcome = ForgetOutcome(report)
    if not report.hashes:
        return outcome
    # A `pllm profile rekey` killed before its swap leaves a whole copy of the vault beside it (under the new
    # passphrase): it may hold what was just forgotten, and the next rekey would only then remove it.
    remove_files(database_files(vault.path.with_name(vault.path.name + REKEY_SUFFIX)))
    store = AdapterStore(vault, settings.paths.adapters)
    was_active = store.active()
    outcome.retired = store.retire_trained_on(report.hashes)
    outcome.active_retired = was_active is not None and was_active in outcome.retired
    outcome.discarded_pending_run = discard_pending_job(store, report.hashes)
    if not retrain:
        outcome.retrain_skipped = "--no-retrain"
    elif was_active is None:
        outcome.retrain_skipped = "no adapter was active"
    elif was_active not in outcome.retired:
        outcome.retrain_skipped = "the active adapter never trained on these items"
    else:
        training = collect(vault, settings.synthetic_ratio)
        if not training.sources:
            outcome.retrain_skipped = "nothing personal left to train on"
        else:
            outcome.retrained = run_adaptation(settings, vault, training=training, on_step=on_step, on_phase=on_phase)
    return outcome
