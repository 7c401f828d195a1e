"""The change journal's upkeep in a long-running process (`calsync serve` and `calsync worker`):
every second the committed rows that wait get their feed positions (so they do not pile up for the
first reader), and every hour what is older than the retention (CALSYNC_JOURNAL_DAYS) is pruned.

Here, not in the service, so a worker-only deployment keeps its journal too. Any number of processes
may run it at once: the sequencer takes the journal_state row's lock first (one at a time), and so
does a prune, before it reads what it deletes, so two pruners never count or delete the same rows
(on PostgreSQL, two unserialised pruners read the same batch; the second then waits on the first's
row locks and counts rows it never deleted, or deadlocks on batches read under different cut-offs)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy import Connection, Engine

from calsync.model import utcnow
from calsync.store import journal

log = logging.getLogger(__name__)

SEQUENCE_EVERY = 1.0
PRUNE_EVERY = 3600.0
PRUNE_RETRY = 60.0


def sequence_waiting(conn: Connection) -> int:
    """Give the committed rows that wait their positions, a batch a transaction (each committed);
    how many. Only a look through the partial index when none waits. `conn` is in no transaction."""
    if not journal.pending(conn):
        return 0
    conn.rollback()  # the look's read transaction ends; each batch is a transaction of its own
    done = 0
    while True:
        count = journal.sequence(conn)
        conn.commit()
        done += count
        if count < journal.SEQUENCE_BATCH:
            return done


def sequence_pending(engine: Engine) -> int:
    with engine.connect() as conn:
        return sequence_waiting(conn)


def prune(engine: Engine, days: float) -> int:
    """Retention: what is older than `days` deleted, after everything committed got its position
    (only sequenced rows are pruned); how many rows this call deleted. One pruner at a time."""
    sequence_pending(engine)
    with engine.begin() as conn:
        journal.sequence(conn)  # takes the journal_state row lock first (and numbers a late arrival)
        return journal.prune(conn, utcnow() - timedelta(days=days))


class JournalUpkeep:
    """A process's thread that sequences the journal every second and prunes it every hour."""

    def __init__(
        self,
        engine: Engine,
        days: float,
        sequence_every: float = SEQUENCE_EVERY,
        prune_every: float = PRUNE_EVERY,
    ) -> None:
        self.engine = engine
        self.days = days
        self.sequence_every = sequence_every
        self.prune_every = prune_every
        self.pruned = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="calsync-journal-upkeep", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def prune_now(self) -> int:
        removed = prune(self.engine, self.days)
        self.pruned += removed
        return removed

    def _run(self) -> None:
        next_prune = time.monotonic()
        while not self._stop.wait(self.sequence_every):
            try:
                sequence_pending(self.engine)
                if time.monotonic() >= next_prune:
                    # a failed prune is tried again in a minute, not an hour
                    next_prune = time.monotonic() + min(self.prune_every, PRUNE_RETRY)
                    removed = self.prune_now()
                    next_prune = time.monotonic() + self.prune_every
                    if removed:
                        log.info("journal retention: %d changes older than %g days pruned", removed, self.days)
            except Exception:
                log.warning("journal upkeep failed; trying again", exc_info=True)
