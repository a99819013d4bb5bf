import datetime as dt

import numpy as np
import pandas as pd

from churn_platform.synthetic.generator import events_to_jsonl, generate

START = dt.date(2026, 1, 1)


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = (generate(START, 10, 50, seed) for seed in (1, 1, 2))
    assert events_to_jsonl(a.event_days[3].events) == events_to_jsonl(b.event_days[3].events)
    assert a.tickets == b.tickets
    assert events_to_jsonl(a.event_days[3].events) != events_to_jsonl(c.event_days[3].events)


def test_churners_fade_cancel_and_complain_before_leaving():
    data = generate(START, 120, 800, seed=11)
    events = pd.concat([d.events.assign(day=i) for i, d in enumerate(data.event_days)])
    customers = data.customers
    churned = customers[customers.churn_day.between(60, 119) & ~customers.silent_churner]
    assert len(churned) > 30
    per_day = events.groupby(["customer_id", "day"]).size()
    late, early, after = [], [], []
    for row in churned.itertuples():
        c, day = row.customer_id, int(row.churn_day)
        history = per_day.get(c, pd.Series(dtype=float))
        late.append(history.reindex(range(day - 7, day), fill_value=0).mean())
        early.append(history.reindex(range(day - 60, day - 40), fill_value=0).mean())
        after.append(history.reindex(range(day + 1, 120), fill_value=0).sum())
    assert np.mean(late) < 0.5 * np.mean(early)
    assert sum(after) == 0
    cancels = events[events.event_type == "cancel_subscription"]
    assert set(cancels.customer_id) == set(customers[customers.churn_day < 120].customer_id)

    tickets = pd.DataFrame(data.tickets)
    churner_ids = set(customers[customers.churn_day.notna()].customer_id)
    negative = tickets.tags.map(lambda t: t == ["negative"])
    assert (
        negative[tickets.requester_id.isin(churner_ids)].mean()
        > negative[~tickets.requester_id.isin(churner_ids)].mean() + 0.2
    )


def test_a_dataset_grows_a_day_without_changing_its_landed_days():
    """With a fixed horizon, landing one more day (`generate --append-day`) leaves every earlier
    day's events as they were; tickets are as they stood at the end of the last landed day."""
    start = dt.date(2026, 3, 1)
    shorter = generate(start, days=10, customers=120, seed=5, horizon_days=40)
    longer = generate(start, days=11, customers=120, seed=5, horizon_days=40)
    for before, after in zip(shorter.event_days, longer.event_days[:10], strict=True):
        pd.testing.assert_frame_equal(before.events, after.events)
    assert events_to_jsonl(longer.event_days[10].events)  # the new day has events of its own
    end = pd.Timestamp(shorter.end_date + dt.timedelta(days=1), tz="UTC")
    assert all(pd.Timestamp(t["updated_at"]) < end for t in shorter.tickets)
    by_id = {t["id"]: t for t in longer.tickets}
    assert all(by_id[t["id"]]["created_at"] == t["created_at"] for t in shorter.tickets)
    # Without a horizon, the data are what they always were for a seed.
    plain = generate(start, days=10, customers=120, seed=5)
    assert plain.tickets == generate(start, days=10, customers=120, seed=5, horizon_days=10).tickets
