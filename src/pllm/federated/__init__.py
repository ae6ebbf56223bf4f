"""Federated experts on Flower: devices improve the shared E-models without sharing their data.

server_app.py (the cloud's side: aggregate, check, score, credit) and client_app.py (the device's side: train on
consented data, send only the update) are Flower apps kept apart; task.py holds the pure train and evaluate
functions, aggregate.py the LoRA-aware aggregation and the checks on updates, dp.py the clipping, noise and epsilon.
"""
