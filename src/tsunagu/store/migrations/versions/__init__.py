"""Alembic revisions, oldest first: ``v0001_config`` then ``v0002_history``."""
