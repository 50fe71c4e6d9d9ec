"""Errors the archive raises. Each message names the problem and the fix."""

from __future__ import annotations


class ArchiveError(Exception):
    """The archive cannot do what was asked; the message says why and what to do."""


class NotFoundError(ArchiveError, LookupError):
    """No run or candidate matches the id (or prefix) given."""


class AmbiguousIdError(ArchiveError, LookupError):
    """An id prefix matches more than one row."""


class ArchiveBusyError(ArchiveError):
    """Another writer held the SQLite write lock for longer than every retry allowed."""


class SchemaError(ArchiveError):
    """The database schema is not one this version of Daedalus can use."""
