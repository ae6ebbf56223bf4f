"""P-tier, on the device: vault, profile, retrieval, adapter store, privacy gate, router, assistant.

It reaches the expert and cloud tiers only over HTTP (remote.py), as a phone reaches a server.
"""
