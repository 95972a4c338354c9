"""Event streaming: wake-ups from the dispatcher thread into asyncio, and SSE framing.

Events live in the store; a stream reads them from there (after ``Last-Event-ID``), so
what a reconnecting client receives is exactly what was persisted.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Callable

from server.store import TERMINAL_EVENTS, JobStore

KEEPALIVE_S = 10.0


class EventHub:
    """Thread-safe ``notify(job_id)`` that wakes the asyncio streams of that job."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Event]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, job_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, job_id)
        except RuntimeError:  # loop closing
            pass

    def _wake(self, job_id: str) -> None:
        for ev in self._waiters.get(job_id, ()):
            ev.set()

    def subscribe(self, job_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters.setdefault(job_id, set()).add(ev)
        return ev

    def unsubscribe(self, job_id: str, ev: asyncio.Event) -> None:
        waiters = self._waiters.get(job_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._waiters[job_id]


def format_event(seq: int, type_: str, data: str) -> bytes:
    return f"id: {seq}\nevent: {type_}\ndata: {data}\n\n".encode()


async def stream_events(
    store: JobStore, hub: EventHub, job_id: str, after: int, run_sync: Callable,
    pending: Callable[[str], tuple[int, str, str] | None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield SSE frames for events after ``after``; ends after a terminal event, at once
    when the job is already terminal and ``after`` is at or past its last event, or when
    the job is deleted.

    pending(job_id): the terminal event of a state the store could not take yet (it is
    sent from memory, with the id the store will give it)."""
    ev = hub.subscribe(job_id)
    try:
        while True:
            ev.clear()
            rows = await run_sync(store.events_after, job_id, after)
            for seq, type_, data in rows:
                yield format_event(seq, type_, data)
                after = seq
                if type_ in TERMINAL_EVENTS:
                    return
            if rows:
                continue
            kept = pending(job_id) if pending is not None else None
            if kept is not None:
                if kept[0] > after:
                    yield format_event(*kept)
                return
            raw = await run_sync(store.raw, job_id)
            if raw is None:
                return
            if raw["state"] in TERMINAL_EVENTS:
                if int(raw["last_event"]) <= after:
                    return  # nothing more will come: end the stream instead of sending keepalives
                continue  # its terminal event was stored after the read above
            try:
                await asyncio.wait_for(ev.wait(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield b": keepalive\n\n"
    finally:
        hub.unsubscribe(job_id, ev)
