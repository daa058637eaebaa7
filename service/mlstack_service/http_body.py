"""Request bodies refused for their size: read and dropped, so the client gets the 413 rather than a reset."""

from collections.abc import Awaitable, Callable
from typing import Any

# A refused body is read and dropped up to this many times the limit.
DISCARD_LIMIT_FACTOR = 16


async def discard_body(receive: Callable[[], Awaitable[dict[str, Any]]], bound: int) -> None:
    """Read and drop the rest of a refused body, up to `bound` bytes.

    A server that answers 413 and closes while the client's bytes are still unread makes the kernel reset the
    connection, and the client sees the reset instead of the answer. Past the bound the client is sending far more
    than any request should, and the reset is the cheaper outcome.
    """
    discarded = 0
    while discarded <= bound:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return
