"""API keys the stack generates for the clients `service.generatedApiClients` names.

Each key is a pulumi-random RandomPassword: 64 letters and digits (about 380 bits), held only in the stack's
encrypted state (its `result` is a secret output). The pods get the key's sha256, never the key; the owner hands the
key to its client from `pulumi stack output --show-secrets apiClientKeys`. Rotating one:
`pulumi up --replace <the key's URN>` (the old key stops working when the pods restart with the new digest).
"""

import hashlib
from collections.abc import Sequence

import pulumi
import pulumi_random as random

KEY_LENGTH = 64


def key_digest(key: str) -> str:
    """What the service compares a presented key against (mlstack_service.auth: sha256, hex)."""
    return hashlib.sha256(key.encode()).hexdigest()


class GeneratedClientKeys:
    """One generated key per named client, and their digests."""

    keys: dict[str, pulumi.Output[str]]
    digests: pulumi.Output[dict[str, str]]

    def __init__(self, name: str, clients: Sequence[str], opts: pulumi.ResourceOptions) -> None:
        self.keys = {
            client: random.RandomPassword(f"{name}-{client}", length=KEY_LENGTH, special=False, opts=opts).result
            for client in clients
        }
        # Output.all() of nothing is a list, not a dict: no generated client, no digests.
        self.digests = (
            pulumi.Output.all(**self.keys).apply(lambda keys: {client: key_digest(key) for client, key in keys.items()})
            if self.keys
            else pulumi.Output.from_input({})
        )
