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
