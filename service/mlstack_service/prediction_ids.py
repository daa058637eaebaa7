"""Prediction ids that can't be guessed, that are unique across replicas, and that still say where the prediction
lives.

An id is `<instance>.<sequence, hex>-<tag>`: `instance` is 12 random hex digits drawn when the process starts (48
bits: two of ten thousand processes share one with a chance below 2e-7), the sequence counts this process's
predictions, and the tag is a keyed BLAKE2b MAC (128 bits) of both. Nobody without the key can make an id the server
accepts, so feedback can't label a prediction whose id it was not given.

The key comes from MLSTACK_PREDICTION_ID_KEY_FILE where the deployment shares one between its replicas: then any
replica verifies any replica's id (`verify`) without shared state, which is what lets feedback reach whichever pod the
load balancer picks, and lets a label arrive after the pod that served the prediction is gone. Without a key file
each process draws its own key, and only it accepts its ids. `sequence_of` answers for this process's own ids only:
it finds the slot of a prediction that is still in this process's memory (drift.FeedbackTracker).
"""

import hashlib
import hmac
import itertools
import os
import re
from pathlib import Path

TAG_BYTES = 16
INSTANCE_DIGITS = 12
MAX_SEQUENCE_DIGITS = 16  # a 64-bit counter in hex
MIN_KEY_BYTES = 32
ID_PATTERN = re.compile(r"^([0-9a-f]{12})\.([1-9a-f][0-9a-f]{0,15})-([0-9a-f]{32})$")


class PredictionIdKeyError(Exception):
    """The shared key file is missing or too short; the message names it."""


def load_key(path: Path) -> bytes:
    """The shared MAC key: the file's bytes, surrounding whitespace removed (a Secret may end in a newline)."""
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise PredictionIdKeyError(f"MLSTACK_PREDICTION_ID_KEY_FILE {path}: {error.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise PredictionIdKeyError(
            f"MLSTACK_PREDICTION_ID_KEY_FILE {path}: the key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return key


class PredictionIds:
    def __init__(self, key: bytes | None = None) -> None:
        # Keyed once; each tag copies the keyed state (measured: a third cheaper than keying per id). BLAKE2b takes
        # keys of up to 64 bytes: a longer shared key is hashed down to one.
        secret = key if key is not None else os.urandom(32)
        if len(secret) > 64:
            secret = hashlib.blake2b(secret).digest()
        self._keyed = hashlib.blake2b(key=secret, digest_size=TAG_BYTES)
        self.instance = os.urandom(INSTANCE_DIGITS // 2).hex()
        self._instance_bytes = bytes.fromhex(self.instance)
        self.sequences = itertools.count(1)

    def _tag(self, instance: bytes, sequence: int) -> str:
        mac = self._keyed.copy()
        mac.update(instance)
        mac.update(sequence.to_bytes(8, "little"))
        return mac.hexdigest()

    def issue(self) -> tuple[str, int]:
        """A fresh id and its sequence number."""
        sequence = next(self.sequences)
        return f"{self.instance}.{sequence:x}-{self._tag(self._instance_bytes, sequence)}", sequence

    def _parse(self, prediction_id: str) -> tuple[str, int] | None:
        """(instance, sequence) of an id whose MAC holds under this key; None for any other string."""
        match = ID_PATTERN.match(prediction_id)
        if match is None:  # one spelling per id: no leading zeros, no upper case, no sign
            return None
        instance, digits, tag = match.groups()
        sequence = int(digits, 16)
        if not hmac.compare_digest(tag, self._tag(bytes.fromhex(instance), sequence)):
            return None
        return instance, sequence

    def verify(self, prediction_id: str) -> bool:
        """Whether some process holding this key issued the id."""
        return self._parse(prediction_id) is not None

    def sequence_of(self, prediction_id: str) -> int | None:
        """The sequence number of an id this process issued; None for any other string."""
        parsed = self._parse(prediction_id)
        if parsed is None or parsed[0] != self.instance:
            return None
        return parsed[1]
