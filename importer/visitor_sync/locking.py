"""One import per district at a time, whichever pod or process runs it.

A row in ``district_locks`` is the lock: inserting it succeeds for one run
only (primary key). A lock whose holder stopped refreshing it for
``STALE_AFTER`` (a killed pod) may be taken over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, update
from sqlalchemy.exc import IntegrityError

from visitor_sync.db.schema import DistrictLock

STALE_AFTER = timedelta(hours=6)


class DistrictBusy(Exception):
    def __init__(self, district_id: str,
                 reason: str = "another import of district {!r} is running") -> None:
        super().__init__(reason.format(district_id))


@contextmanager
def district_lock(engine: Engine, district_id: str, run_id: str) -> Iterator[None]:
    now = datetime.now(UTC)
    table = DistrictLock.__table__
    with engine.begin() as connection:
        connection.execute(delete(table).where(table.c.district_id == district_id,
                                               table.c.heartbeat_at < now - STALE_AFTER))
    try:
        with engine.begin() as connection:
            connection.execute(insert(table).values(
                district_id=district_id, run_id=run_id, acquired_at=now, heartbeat_at=now))
    except IntegrityError as error:
        raise DistrictBusy(district_id) from error
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(delete(table).where(table.c.district_id == district_id,
                                                   table.c.run_id == run_id))


def heartbeat(engine: Engine, district_id: str, run_id: str) -> None:
    """Tell other runs this one is alive (called between files); a run that lost its lock
    (it stalled past ``STALE_AFTER`` and another run took over) stops."""
    table = DistrictLock.__table__
    with engine.begin() as connection:
        refreshed = connection.execute(update(table).where(
            table.c.district_id == district_id, table.c.run_id == run_id).values(
            heartbeat_at=datetime.now(UTC))).rowcount
    if refreshed != 1:
        raise DistrictBusy(district_id, "this run lost the lock of district {!r} to another "
                                        "run; it stops")
