"""Writing generated data where the platform reads it: the landing zone and the CRM export."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from churn_platform.crm.export import write_export
from churn_platform.logs.landing_zone import LandingZone, day_folder
from churn_platform.storage.connection import ObjectStoreConnection, open_path
from churn_platform.storage.files import write_bytes_atomic
from churn_platform.synthetic.generator import DayStream, GeneratedData, GeneratedDay

# Logs arrive in two files a day (morning and afternoon batches), as a real exporter would write.
BATCH_SPLIT_HOUR = 12
# Files are written by one background thread while the next day is generated: writing them (each
# with an fsync) takes about as long as generating them, and the two overlap (file I/O and fsync
# release the GIL). At most this many encoded files wait for it, so memory stays a few days' worth.
FILES_IN_FLIGHT = 4


def write_generated(
    data: GeneratedData | DayStream,
    landing_zone: LandingZone,
    crm_export_path: str,
    connection: ObjectStoreConnection | None = None,
    only_days: set[str] | None = None,
) -> dict[str, int]:
    """Write the events of every day (or of ``only_days``) and the whole ticket export.

    A ``DayStream`` (``iter_days``) is written as it is generated, one day in memory at a time.
    Days outside ``only_days`` are still generated (each day's draws follow the previous day's)
    but not encoded. Files are written in order; the first failure stops the run and is raised."""
    days: Iterable[GeneratedDay] = data.event_days if isinstance(data, GeneratedData) else data
    files = events = 0
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="landing-writer") as writer:
        try:
            for day in days:
                events += len(day)
                date = day.date.isoformat()
                if only_days is not None and date not in only_days:
                    continue
                split = day.split_at(BATCH_SPLIT_HOUR * 3600)
                for name, start, stop in (
                    ("events-am.jsonl", 0, split),
                    ("events-pm.jsonl", split, len(day)),
                ):
                    # What LandingZone.write_file does, with bytes: write_file takes text, and
                    # decoding and re-encoding every file would cost several percent of the run.
                    path = day_folder(landing_zone.base_path, date, landing_zone.connection) / name
                    pending.append(writer.submit(write_bytes_atomic, path, day.to_jsonl(start, stop)))
                    files += 1
                    while len(pending) > FILES_IN_FLIGHT:
                        pending.popleft().result()  # raises here if that write failed
            while pending:
                pending.popleft().result()
        except BaseException:
            for future in pending:  # not started yet: never written
                future.cancel()
            raise
    if isinstance(data, GeneratedData):
        write_export(crm_export_path, data.tickets, connection)
        tickets = len(data.tickets)
    else:
        # What write_export does, with the lines the stream kept instead of dicts (a third of the
        # memory, and no second copy of every ticket while the export is encoded).
        write_bytes_atomic(open_path(crm_export_path, connection), data.tickets_jsonl)
        tickets = data.ticket_count
    return {
        "days": data.days,
        "customers": len(data.customers),
        "events": events,
        "landing_files": files,
        "tickets": tickets,
        "churners": int(data.customers["churn_day"].notna().sum()),
    }
