"""Prediction ids that can't be guessed, and that still say where the prediction lives.

An id is `<sequence, hex>-<tag>`: the tag is a keyed BLAKE2b MAC (128 bits) of the sequence number under a key drawn
from os.urandom when the process starts. Nobody without the key can make an id the server accepts, so feedback can't
label a prediction whose id it was not given; the sequence inside lets the feedback tracker find the prediction's
slot without a dict entry per prediction. The sequence tells a client how many requests this process has served,
and nothing else. A restart draws a new key: ids of an earlier process are refused (their predictions are gone too).
"""

import hashlib
import hmac
import itertools
import os

TAG_BYTES = 16
MAX_SEQUENCE_DIGITS = 16  # a 64-bit counter in hex


class PredictionIds:
    def __init__(self) -> None:
        # Keyed once; each tag copies the keyed state (measured: a third cheaper than keying per id).
        self._keyed = hashlib.blake2b(key=os.urandom(32), digest_size=TAG_BYTES)
        self.sequences = itertools.count(1)

    def _tag(self, sequence: int) -> str:
        mac = self._keyed.copy()
        mac.update(sequence.to_bytes(8, "little"))
        return mac.hexdigest()

    def issue(self) -> tuple[str, int]:
        """A fresh id and its sequence number."""
        sequence = next(self.sequences)
        return f"{sequence:x}-{self._tag(sequence)}", sequence

    def sequence_of(self, prediction_id: str) -> int | None:
        """The sequence number of an id this process issued; None for any other string."""
        digits, separator, tag = prediction_id.partition("-")
        if not separator or not 0 < len(digits) <= MAX_SEQUENCE_DIGITS or len(tag) != 2 * TAG_BYTES:
            return None
        try:
            sequence = int(digits, 16)
        except ValueError:
            return None
        if digits != f"{sequence:x}":  # one spelling per id: no leading zeros, no upper case, no sign
            return None
        return sequence if hmac.compare_digest(tag, self._tag(sequence)) else None
