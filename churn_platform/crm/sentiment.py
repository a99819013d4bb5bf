"""Ticket sentiment with VADER, a lexicon-and-rules model that ships its lexicon in the package."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

SENTIMENT_COLUMNS = {
    "ticket_id": "int64",
    "customer_id": "int64",
    "updated_date": "object",
    "sentiment": "float64",  # VADER compound score in [-1, 1]
    "sentiment_label": "string",
}


# VADER's time grows with the square of a text's length (a 160 KB description took 47 s): a ticket's
# sentiment is read from its first MAX_SENTIMENT_CHARS characters, which bounds scoring time.
MAX_SENTIMENT_CHARS = 10_000


@lru_cache(maxsize=1)
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def label_for(compound: float) -> str:
    # VADER's documented thresholds.
    if compound >= 0.05:
        return "positive"
    if compound <= -0.05:
        return "negative"
    return "neutral"


def ticket_sentiment(subject: str | None, description: str | None) -> float:
    """VADER's compound score of a ticket's subject and description (truncated, see above)."""
    text = f"{subject or ''}. {description or ''}"[:MAX_SENTIMENT_CHARS]
    return _analyzer().polarity_scores(text)["compound"]


def score_ticket_sentiment(tickets: pd.DataFrame) -> pd.DataFrame:
    subjects, descriptions = tickets["subject"].tolist(), tickets["description"].tolist()
    scores = [
        ticket_sentiment(None if pd.isna(s) else s, None if pd.isna(d) else d)
        for s, d in zip(subjects, descriptions, strict=True)
    ]
    result = pd.DataFrame(
        {
            "ticket_id": tickets["ticket_id"].to_numpy(),
            "customer_id": tickets["customer_id"].to_numpy(),
            "updated_date": tickets["updated_date"].to_numpy(),
            "sentiment": pd.Series(scores, dtype="float64"),
        }
    )
    result["sentiment_label"] = result["sentiment"].map(label_for)
    return result.astype(SENTIMENT_COLUMNS)
