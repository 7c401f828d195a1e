"""Fresh planner statistics for the tables a big sync fills (PostgreSQL).

PostgreSQL plans a query from its statistics of each table, and psycopg prepares a statement its
connection runs often, after which the server may keep one generic plan for it. A listing of
100,000 events into a new binding grows `event_links` and `events` from nothing within a minute,
before autovacuum looks (and where it is off, never): the page's link lookup, planned when the
binding had no rows, read every link of the binding per chunk of 500 ids and filtered them, so
each page cost more than the last (a 100,000-event first sync took 400 s, not 35). ANALYZE after
the sync's rows first reach a few thousand, and again each time they double, keeps the plans right
(ANALYZE also makes the server re-plan the statements prepared on those tables) at a cost of a
dozen quick ANALYZEs for the largest calendars and none for the common ones.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

# what a sync's pages write into; sampled, not read whole (ANALYZE reads at most 30,000 rows a table)
GROWING_TABLES = ("events", "event_links", "event_changes")
FIRST_REFRESH_ROWS = 5000


class GrowthWatch:
    """Counts the rows one sync has written and refreshes the statistics at FIRST_REFRESH_ROWS and
    at each doubling after it; does nothing on a database whose planner needs none of it (SQLite)."""

    def __init__(self, engine: Engine, first: int | None = None) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        self.written = 0
        self.next_refresh = first if first is not None else FIRST_REFRESH_ROWS
        self.refreshes = 0

    def wrote(self, rows: int) -> None:
        """After a page's commit: `rows` more were written (so the ANALYZE sees them)."""
        if not self.enabled:
            return
        self.written += rows
        if self.written < self.next_refresh:
            return
        self.next_refresh = 2 * self.written
        refresh_statistics(self.engine)
        self.refreshes += 1


def refresh_statistics(engine: Engine) -> None:
    """ANALYZE the growing tables, outside any transaction. A failure (a role that does not own the
    tables is only warned by the server; a lost connection) costs the plans, never the sync."""
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"ANALYZE {', '.join(GROWING_TABLES)}")
    except SQLAlchemyError as exc:
        log.warning("could not refresh the planner's statistics: %s", exc)
