"""Methods built on LoRA adapters; they land with the on-device trainer and the cloud tier."""

from __future__ import annotations

from pllm.bench.methods.base import NotAvailableYet, register_method

TRAINER = "the on-device LoRA trainer (the neural adaptation issue)"


@register_method
class TaskAdapter(NotAvailableYet):
    name = "task"
    needs = TRAINER


@register_method
class PerUserPEFT(NotAvailableYet):
    name = "peft"
    needs = TRAINER


@register_method
class RagPEFT(NotAvailableYet):
    name = "rag+peft"
    needs = TRAINER


@register_method
class CDCDA(NotAvailableYet):
    name = "cdcda"
    needs = "the T-tier cloud service for synthetic data (the cloud issue) and the LoRA trainer"


@register_method
class Continual(NotAvailableYet):
    name = "continual"
    needs = TRAINER
