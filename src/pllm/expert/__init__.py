"""The E-tier: domain experts, each a LoRA adapter over one base model, distilled from the T-model.

`domains` (what an expert knows and how it is examined), `distill` (the T-model writes its training pairs),
`train` (the shared trainer, then the exam against the bare base), `registry` (the experts that passed),
`serving` (every expert an adapter on the one loaded base). The cloud service serves them; the device reaches them
over HTTP, through its privacy gate.
"""
