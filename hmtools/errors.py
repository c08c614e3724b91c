"""Exceptions that carry a user-facing message (the CLI prints them without a traceback)."""

from __future__ import annotations


class HMError(Exception):
    """Base class: an error whose message is meant for the user (names file/video/frame)."""


class SchemaError(HMError):
    """A store is not an -HM store, has another schema version, or violates the schema."""


class InputError(HMError):
    """Bad user input: unreadable file, inconsistent frame size, empty tree, malformed JSON."""


class ConflictError(HMError):
    """Two sources disagree (e.g. two shards hold different masks for one frame)."""


class DamagedStoreError(InputError):
    """A store's dataset cannot be read back (a damaged compressed chunk); names file, video,
    layer and dataset."""
