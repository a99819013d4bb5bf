"""Writing generated data where the platform reads it: the landing zone and the CRM export."""

from __future__ import annotations

from churn_platform.crm.export import write_export
from churn_platform.logs.landing_zone import LandingZone
from churn_platform.storage.connection import ObjectStoreConnection
from churn_platform.synthetic.generator import GeneratedData, events_to_jsonl

# Logs arrive in two files a day (morning and afternoon batches), as a real exporter would write.
BATCH_SPLIT_HOUR = 12


def write_generated(
    data: GeneratedData,
    landing_zone: LandingZone,
    crm_export_path: str,
    connection: ObjectStoreConnection | None = None,
) -> dict[str, int]:
    files = 0
    for day in data.event_days:
        date = day.date.isoformat()
        hours = day.events["timestamp"].dt.hour
        for name, batch in (
            ("events-am.jsonl", day.events[hours < BATCH_SPLIT_HOUR]),
            ("events-pm.jsonl", day.events[hours >= BATCH_SPLIT_HOUR]),
        ):
            landing_zone.write_file(date, name, events_to_jsonl(batch))
            files += 1
    write_export(crm_export_path, data.tickets, connection)
    return {
        "days": data.days,
        "customers": len(data.customers),
        "events": sum(len(d.events) for d in data.event_days),
        "landing_files": files,
        "tickets": len(data.tickets),
        "churners": int(data.customers["churn_day"].notna().sum()),
    }
