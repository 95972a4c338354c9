"""The one vocabulary of a job's state, shared by ``job.json``, the server's store and HTTP
API, batch summaries and (as a copied tuple, checked by tests/addon/test_spec_drift.py) the
Blender add-on.

A finished job is "succeeded" everywhere (the HTTP API's word). ``job.json`` files and batch
summaries written before this enum said "done"; ``JobState.parse`` still reads them.
The module imports nothing, so the server and the CLI can use it without loading torch.
"""

from __future__ import annotations

from enum import Enum

#: Words older job folders used, and the state each one means now.
LEGACY_WORDS = {"done": "succeeded"}


class JobState(str, Enum):
    """A job's state. A ``str`` enum: ``JobState.SUCCEEDED == "succeeded"`` and it serializes
    to its word in JSON, so files and API bodies carry plain words."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for the states a job never leaves (succeeded, failed, cancelled)."""
        return self.value in TERMINAL

    @classmethod
    def parse(cls, word: object) -> "JobState | None":
        """The state a stored word names (old words included), or None for anything else."""
        if isinstance(word, cls):
            return word
        if not isinstance(word, str):
            return None
        try:
            return cls(LEGACY_WORDS.get(word, word))
        except ValueError:
            return None

    def __str__(self) -> str:  # f-strings and logs show the word, not "JobState.X"
        return self.value


#: The words of every state, in life-cycle order (what the HTTP schema's Literal lists).
WORDS: tuple[str, ...] = tuple(s.value for s in JobState)
#: The terminal states' words. Words, not members: an Enum member hashes by its name, so
#: ``"failed" in {JobState.FAILED}`` is False although ``"failed" == JobState.FAILED``.
TERMINAL = frozenset({JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value})
