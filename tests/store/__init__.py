"""Storage tests: every one runs on SQLite and PostgreSQL (see conftest.py)."""
