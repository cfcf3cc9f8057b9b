"""Blocking work of the async routes (the database, the storage) in worker threads, a bounded
number at a time.

The bound is what keeps the event loop responsive under load: requests beyond it wait here, costing
the loop nothing, instead of all finishing their thread work at once and queueing their responses
on the loop, where `/healthz` (and every other request) would queue behind them. The threads are
the loop's default executor: asyncio's hand-off is several times cheaper than anyio's threadpool
(which FastAPI uses for `def` routes and dependencies).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)
_limit = 2  # until set_thread_calls: see Settings.api_threads for the trade-off


def set_thread_calls(limit: int) -> None:
    """How many calls run in threads at once, per event loop (for loops not yet serving)."""
    global _limit
    _limit = max(1, limit)


def _gate() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = asyncio.Semaphore(_limit)
    return gate


async def in_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread, after the calls ahead of it (FIFO)."""
    async with _gate():
        return await asyncio.to_thread(function, *args, **kwargs)


# Input fetches wait on the network, not the database: their own, wider gate, so a slow image
# server never holds a database slot, and a flood of image URLs cannot spawn unbounded threads.
FETCHES_AT_ONCE = 8
_fetch_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


async def fetching(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` in a worker thread, at most FETCHES_AT_ONCE at a time."""
    loop = asyncio.get_running_loop()
    gate = _fetch_gates.get(loop)
    if gate is None:
        gate = _fetch_gates[loop] = asyncio.Semaphore(FETCHES_AT_ONCE)
    async with gate:
        return await asyncio.to_thread(function, *args, **kwargs)
