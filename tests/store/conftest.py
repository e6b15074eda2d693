"""The store tests' database fixtures live in :mod:`tests.conftest`, shared with the API tests
so one PostgreSQL serves the whole session; the helpers are re-exported for older imports."""

from tests.conftest import FakeClock, PgServer, run_async

__all__ = ["FakeClock", "PgServer", "run_async"]
