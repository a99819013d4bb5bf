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


def score_ticket_sentiment(tickets: pd.DataFrame) -> pd.DataFrame:
    analyzer = _analyzer()
    texts = (tickets["subject"].fillna("") + ". " + tickets["description"].fillna("")).tolist()
    scores = [analyzer.polarity_scores(text)["compound"] for text in texts]
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
