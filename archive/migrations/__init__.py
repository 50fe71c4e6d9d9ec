"""Alembic migrations for the archive (run by ``daedalus.archive.db.upgrade``)."""

# The newest revision in versions/. Opening an archive compares the database against this
# constant so the common case (already up to date) never imports Alembic; a test checks
# it matches the scripts. Update it with every new revision.
HEAD = "0002"
