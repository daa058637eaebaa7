"""Who may call: API keys checked in constant time, and a token bucket per caller.

A keys file (MLSTACK_API_KEYS_FILE, MLSTACK_FEEDBACK_KEYS_FILE; mounted from a Kubernetes Secret) holds one client a
line, `<client name> <sha256 of the key, hex>`; `#` starts a comment. The service never holds or logs a key: a
presented key is hashed and its digest compared with every entry (hmac.compare_digest, no early exit), so neither
the answer's timing nor a log line tells anything about the keys. The client's name is what logs, rate limits and
the drift window's per-source sample see.

    key=$(openssl rand -hex 32); printf 'orders-api %s\n' "$(printf %s "$key" | sha256sum | cut -d' ' -f1)"
"""

import hashlib
import hmac
import math
import re
from dataclasses import dataclass
from pathlib import Path

CLIENT_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DIGEST = re.compile(r"^[0-9a-f]{64}$")
AUTHORIZATION = b"authorization"
API_KEY_HEADER = b"x-api-key"
MAX_TRACKED_SOURCES = 10_000


class KeysFileError(Exception):
    """A keys file the service cannot use; the message names the file and line, never a value."""


@dataclass(frozen=True, slots=True)
class ApiKeys:
    """The clients allowed in, by the sha256 of their keys."""

    source: str
    entries: tuple[tuple[str, bytes], ...]

    @classmethod
    def load(cls, path: Path) -> "ApiKeys":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise KeysFileError(f"{path}: cannot read the keys file: {type(error).__name__}") from None
        entries: list[tuple[str, bytes]] = []
        names: set[str] = set()
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2 or not CLIENT_NAME.match(fields[0]) or not DIGEST.match(fields[1]):
                # The line may hold a key pasted by mistake: say where, never what.
                raise KeysFileError(f"{path}:{number}: expected '<client name> <sha256 of the key, 64 lowercase hex>'")
            if fields[0] in names:
                raise KeysFileError(f"{path}:{number}: client {fields[0]!r} is listed twice")
            names.add(fields[0])
            entries.append((fields[0], bytes.fromhex(fields[1])))
        if not entries:
            raise KeysFileError(f"{path}: no keys; an empty keys file would lock every client out")
        return cls(str(path), tuple(entries))

    def client_for(self, headers: list[tuple[bytes, bytes]]) -> str | None:
        """The client whose key the request presents (Authorization: Bearer, or X-API-Key); None: no valid key."""
        presented = presented_key(headers)
        if presented is None:
            return None
        digest = hashlib.sha256(presented).digest()
        found = None
        for name, expected in self.entries:  # every entry, whatever matched: the time does not depend on the keys
            if hmac.compare_digest(digest, expected):
                found = name
        return found


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in headers:
        if name == AUTHORIZATION:
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                return credentials.strip()
        elif name == API_KEY_HEADER and value.strip():
            return value.strip()
    return None


class RateLimiter:
    """A token bucket per source: `rate` requests a second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._buckets: dict[str, list[float]] = {}  # source -> [tokens, when they were counted]

    def retry_after(self, source: str, now: float) -> int:
        """0 when the request may go ahead (a token is taken), else the whole seconds until a token is back."""
        bucket = self._buckets.get(source)
        if bucket is None:
            if len(self._buckets) >= MAX_TRACKED_SOURCES:
                self._forget_full(now)
            bucket = self._buckets[source] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1:
            bucket[0] = tokens - 1
            return 0
        bucket[0] = tokens
        return max(1, math.ceil((1 - tokens) / self.rate))

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (a fresh one is the same); memory stays bounded by active sources."""
        refill = self.burst / self.rate
        self._buckets = {s: b for s, b in self._buckets.items() if now - b[1] < refill}
