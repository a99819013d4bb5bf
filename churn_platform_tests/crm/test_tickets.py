import datetime as dt

import pytest

from churn_platform.crm.export import read_export, write_export
from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import TICKET_COLUMNS, TicketSchemaError, normalize_tickets
from churn_platform_tests.support.data import crm_ticket


def ticket(**overrides):
    return crm_ticket("2026-01-05", **{"brand_new_field": {"x": 1}, **overrides})


def test_latest_version_of_each_ticket_is_kept_and_unknown_fields_ignored():
    frame = normalize_tickets(
        [
            ticket(id=1, status="open", updated_at="2026-01-05T10:00:00Z"),
            ticket(id=1, status="solved", updated_at="2026-01-05T18:00:00Z"),
            ticket(id=2),
        ]
    )
    assert list(frame.columns) == list(TICKET_COLUMNS)
    assert frame["ticket_id"].tolist() == [1, 2]
    assert frame.loc[frame.ticket_id == 1, "status"].item() == "solved"
    assert frame["updated_date"].tolist() == [dt.date(2026, 1, 5)] * 2


@pytest.mark.parametrize("rating, expected", [(None, None), ({}, None), ({"score": "bad"}, "bad")])
def test_satisfaction_rating_may_be_null_empty_or_an_object(rating, expected):
    value = normalize_tickets([ticket(satisfaction_rating=rating)])["satisfaction"].iloc[0]
    assert (value if isinstance(value, str) else None) == expected


def test_missing_required_fields_are_named():
    broken = ticket(id=9)
    del broken["requester_id"]
    with pytest.raises(TicketSchemaError, match=r"requester_id missing \(tickets \[9\]"):
        normalize_tickets([ticket(), broken])


def test_sentiment_reads_angry_and_happy_text():
    frame = normalize_tickets(
        [
            ticket(
                id=1, subject="Terrible", description="This is unacceptable, awful and broken. I am furious."
            ),
            ticket(id=2, subject="Thanks", description="Great support, I love the product. Thank you!"),
            ticket(id=3, subject="Invoice", description="Where is the invoice page?"),
        ]
    )
    scores = score_ticket_sentiment(frame).set_index("ticket_id")
    assert scores.loc[1, "sentiment"] < -0.5 and scores.loc[1, "sentiment_label"] == "negative"
    assert scores.loc[2, "sentiment"] > 0.5 and scores.loc[2, "sentiment_label"] == "positive"
    assert scores.loc[3, "sentiment_label"] == "neutral"


def test_missing_export_says_how_to_create_it(tmp_path):
    with pytest.raises(Exception, match="churn-platform generate"):
        read_export(str(tmp_path / "none.jsonl"))


def test_export_round_trips(tmp_path):
    path = str(tmp_path / "tickets.jsonl")
    write_export(path, [ticket(id=1), ticket(id=2)])
    assert [t["id"] for t in read_export(path)] == [1, 2]


def test_a_huge_description_is_scored_in_bounded_time_from_its_first_characters():
    """VADER's time grows with the square of the text (160 KB took 47 s): the text is truncated."""
    import time

    import pandas as pd

    from churn_platform.crm.sentiment import MAX_SENTIMENT_CHARS, score_ticket_sentiment, ticket_sentiment

    huge = "The export keeps failing and I am really angry about it. " * 3000  # ~170 KB
    tickets = pd.DataFrame(
        {
            "ticket_id": [1],
            "customer_id": [2],
            "updated_date": ["2026-01-05"],
            "subject": ["Broken"],
            "description": [huge],
        }
    )
    started = time.perf_counter()
    scored = score_ticket_sentiment(tickets)
    assert time.perf_counter() - started < 5
    assert scored["sentiment"].iloc[0] == ticket_sentiment(
        "Broken", huge[: MAX_SENTIMENT_CHARS - len("Broken. ")]
    )
    assert scored["sentiment_label"].iloc[0] == "negative"
