"""Alembic environment and revisions of the Tsunagu schema.

Run by :func:`tsunagu.store.migrate`; see docs/STORAGE.md.
"""
