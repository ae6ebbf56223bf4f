"""The T-tier: the cloud service devices reach over HTTP (`pllm cloud serve`), its T-model and augmentation.

The personal tier never imports this package: it talks to the service through `pllm.personal.remote`.
"""
