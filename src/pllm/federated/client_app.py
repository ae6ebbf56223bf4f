"""The Flower ClientApp: on the user's device, train the expert's adapter on the domain data the user consented to
share with this expert, and send back only the adapter update (B alone under FFA-LoRA, clipped under DP). The data
never leaves the device; the server learns the update and how many examples made it.

Where the data comes from, in the node's config: `data` (a jsonl of question/answer pairs the user chose, as
`pllm fed client --data FILE` passes it) or, in a simulation, `partition-id` of `num-partitions` of the expert's
own distilled pairs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from pllm.config import Settings, get_settings
from pllm.expert.domains import QA, read_qa_jsonl
from pllm.federated.task import (
    FedConfig,
    client_fault,
    client_partition,
    expert_pairs,
    from_record,
    lora_from_config,
    poisoned,
    to_record,
    train_update,
)


class ClientDropped(RuntimeError):
    """A simulated client failing mid-round (`drop`), as a device that loses power or network does."""


def local_data(settings: Settings, fed: FedConfig, node: dict[str, Any]) -> tuple[list[QA], int]:
    """This client's pairs and its number (the partition in a simulation, 0 on a device)."""
    if node.get("data"):
        return read_qa_jsonl(Path(str(node["data"]))), 0
    part, parts = int(node["partition-id"]), int(node["num-partitions"])
    return client_partition(expert_pairs(settings, fed.expert), part, parts, settings.paths.cache / "fed"), part


def handle_train(msg: Message, context: Context, fed: FedConfig) -> Message:
    node = dict(context.node_config)
    settings = get_settings(home=Path(str(node["home"]))) if node.get("home") else fed.settings()
    config = msg.content.config_records["config"]
    fed = replace(fed, method=str(config.get("method", fed.method)))
    server_round = int(str(config.get("server-round", 0)))
    pairs, client = local_data(settings, fed, node)
    if client_fault(fed.drop, client) == str(server_round):
        raise ClientDropped(f"client {client} dropped out in round {server_round}")
    start = from_record(msg.content.array_records["arrays"])
    sent, loss = train_update(settings, start, lora_from_config(config), pairs, fed, round_seed=server_round)
    attack = client_fault(fed.poison, client)
    if attack:
        sent = poisoned(sent, start, attack)
    device = str(node.get("device") or f"sim-client-{client}")
    return Message(RecordDict({"arrays": to_record(sent),
                               "metrics": MetricRecord({"num-examples": len(pairs), "train-loss": loss}),
                               "meta": ConfigRecord({"device": device})}), reply_to=msg)


def client_app(fed: FedConfig) -> ClientApp:
    """A ClientApp for this run, configured in code (`pllm fed simulate`)."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        return handle_train(msg, context, fed)

    return app


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """The deployment engine's entry (`[tool.flwr.app.components]`)."""
    return handle_train(msg, context, FedConfig.from_run_config(dict(context.run_config)))



def secure_client_app(fed: FedConfig) -> ClientApp:
    """The ClientApp under SecAgg+ (`secure_server_app`): the same training, its update masked by Flower's
    `secaggplus_mod` before it leaves the device."""
    import numpy as np
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod

    class ExpertClient(NumPyClient):  # type: ignore[misc]
        def __init__(self, context: Context) -> None:
            self.context = context

        def fit(self, parameters: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int, dict]:
            node = dict(self.context.node_config)
            settings = fed.settings()
            pairs, client = local_data(settings, fed, node)
            server_round = int(config.get("server-round", 0))
            if client_fault(fed.drop, client) == str(server_round):
                raise ClientDropped(f"client {client} dropped out in round {server_round}")
            keys = str(config["keys"]).split(",")
            start = dict(zip(keys, parameters, strict=True))
            sent, loss = train_update(settings, start, lora_from_config(config), pairs,
                                      replace(fed, method="ffa"), round_seed=server_round)
            whole = {**start, **sent}
            return [whole[k] for k in keys], len(pairs), {"train-loss": loss}

    def client_fn(context: Context) -> Any:
        return ExpertClient(context).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])
