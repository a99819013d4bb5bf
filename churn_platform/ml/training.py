"""Building training sets and training a generic churn classifier (scikit-learn)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS

ID_COLUMN = "customer_id"
LABEL_COLUMN = "churned"
AS_OF_COLUMN = "as_of_date"
# Feature-table columns that describe rows rather than customers' behaviour.
NON_FEATURE_COLUMNS = (AS_OF_COLUMN, "is_active", "cancellations_30d")


class TrainingDataError(ValueError):
    """The training data cannot produce a meaningful model; the message says why."""


def training_as_of_dates(cutoff: str, window_days: int, step_days: int) -> list[str]:
    """The cutoff and every ``step_days`` before it inside a window of ``window_days`` days."""
    if step_days < 1:
        raise ValueError("step_days must be >= 1")
    end = dt.date.fromisoformat(cutoff)
    offsets = range(0, window_days, step_days)
    return sorted((end - dt.timedelta(days=o)).isoformat() for o in offsets)


def build_training_set(
    features: pd.DataFrame, labels: pd.DataFrame, as_of_dates: Sequence[str]
) -> pd.DataFrame:
    """Active customers' features at each as-of date, joined to whether they churned afterwards."""
    wanted = set(pd.to_datetime(list(as_of_dates)).date)
    active = features[features[AS_OF_COLUMN].isin(wanted) & features["is_active"]]
    joined = active.merge(
        labels[[AS_OF_COLUMN, ID_COLUMN, LABEL_COLUMN]], on=[AS_OF_COLUMN, ID_COLUMN], how="left"
    )
    joined[LABEL_COLUMN] = joined[LABEL_COLUMN].fillna(False).astype(bool)
    joined = joined.drop(columns=[c for c in ("is_active", "cancellations_30d") if c in joined])
    return joined.sort_values([AS_OF_COLUMN, ID_COLUMN]).reset_index(drop=True)


@dataclass
class Holdout:
    """The held-out rows a model was evaluated on, with its predictions."""

    features: pd.DataFrame
    labels: np.ndarray
    probabilities: np.ndarray
    as_of_dates: list[str] = field(default_factory=list)  # each row's as-of date (ISO), if known


@dataclass
class ChurnModel:
    """A fitted pipeline with what is needed to use and audit it."""

    pipeline: Pipeline
    feature_columns: list[str]
    numeric_columns: list[str]
    categorical_columns: list[str]
    metrics: dict[str, float]
    id_column: str
    label_column: str
    seed: int
    split: EvaluationSplit | None = None
    holdout: Holdout | None = None  # the evaluation rows and their predictions

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in frame.columns]
        if missing:
            raise TrainingDataError(f"features missing for scoring: {missing}")
        return self.pipeline.predict_proba(frame[self.feature_columns])[:, 1]


def _as_object(frame: pd.DataFrame) -> pd.DataFrame:
    # Nullable string columns hold pd.NA, which scikit-learn's imputers cannot compare.
    return frame.astype(object).where(frame.notna(), np.nan)


def split_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    numeric, categorical = [], []
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    return numeric, categorical


def make_pipeline(numeric: list[str], categorical: list[str], seed: int) -> Pipeline:
    # scikit-learn is imported where it is used: a run that does not train (most) does not pay ~1.5 s.
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    categorical_pipeline = Pipeline(
        [
            ("to_object", FunctionTransformer(_as_object, feature_names_out="one-to-one")),
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                numeric,
            ),
            ("categorical", categorical_pipeline, categorical),
        ]
    )
    model = HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.06,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        early_stopping=False,
        random_state=seed,
    )
    return Pipeline([("preprocess", preprocess), ("model", model)])


def evaluate(y_true: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    return {
        "roc_auc": float(roc_auc_score(y_true, probability)),
        "pr_auc": float(average_precision_score(y_true, probability)),
        "brier": float(brier_score_loss(y_true, probability)),
        "log_loss": float(log_loss(y_true, probability, labels=[False, True])),
        "positive_rate": float(np.mean(y_true)),
    }


def threshold_metrics(y_true: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = probability >= threshold
    true_positive = float(np.sum(predicted & y_true))
    precision = true_positive / max(float(predicted.sum()), 1.0)
    recall = true_positive / max(float(y_true.sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision_at_threshold": precision,
        "recall_at_threshold": recall,
        "f1_at_threshold": f1,
        "flagged_rate_at_threshold": float(predicted.mean()),
    }


def training_lineage(cutoff: str, table: pd.DataFrame, files: list[dict[str, Any]]) -> dict[str, Any]:
    """What a model was trained on: dates, partitions, row counts and the files with their hashes."""
    dates = sorted({str(d) for d in table[AS_OF_COLUMN].unique()}) if AS_OF_COLUMN in table else []
    return {
        "training_cutoff": cutoff,
        "as_of_dates": dates,
        "rows": int(len(table)),
        "churned_rows": int(table[LABEL_COLUMN].sum()) if LABEL_COLUMN in table else None,
        "files": files,
    }


@dataclass(frozen=True)
class EvaluationSplit:
    """Which rows a model was fitted on and which it was evaluated on.

    ``out_of_time``: fitted on as-of dates up to ``fit_cutoff``, evaluated on the latest as-of
    dates, the first of which is at least one label horizon after ``fit_cutoff``, so no fitted
    label window overlaps an evaluated one. ``in_window``: the history was too short for that
    (``reason`` says why); a split by customer inside the window, whose metrics are optimistic.
    """

    kind: str
    fit_cutoff: str | None  # the last as-of date of the rows the model was fitted on
    evaluation_dates: list[str]
    fit_rows: int
    evaluation_rows: int
    fit_churn_rate: float
    evaluation_churn_rate: float
    purge_days: int
    reason: str = ""

    @property
    def out_of_time(self) -> bool:
        return self.kind == OUT_OF_TIME

    def as_tags(self) -> dict[str, str]:
        """The split as strings, for MLflow params and registered-version tags."""
        return {
            "split": self.kind,
            "fit_cutoff": self.fit_cutoff or "",
            "evaluation_dates": ",".join(self.evaluation_dates),
            "fit_rows": str(self.fit_rows),
            "evaluation_rows": str(self.evaluation_rows),
            "fit_churn_rate": f"{self.fit_churn_rate:.4f}",
            "evaluation_churn_rate": f"{self.evaluation_churn_rate:.4f}",
            "purge_days": str(self.purge_days),
            **({"split_reason": self.reason} if self.reason else {}),
        }


OUT_OF_TIME = "out_of_time"
IN_WINDOW = "in_window"


def _dates(values) -> pd.Series:
    return pd.Series(pd.to_datetime(pd.Series(values)).dt.date.to_numpy())


def out_of_time_masks(
    as_of: pd.Series, labels: np.ndarray, horizon_days: int, evaluation_dates: int = 1
) -> tuple[np.ndarray, np.ndarray, str | None, list[str], str]:
    """(fit mask, evaluation mask, fit cutoff, evaluation dates, why not) of a purged out-of-time
    split: evaluate on the latest ``evaluation_dates`` as-of dates, fit on the as-of dates at least
    ``horizon_days`` before the first of them. Empty masks and a reason when the history is too
    short or a side lacks churners or retained customers."""
    dates = _dates(as_of)
    distinct = sorted(set(dates))
    evaluated = distinct[-evaluation_dates:]
    first_evaluated = evaluated[0]
    purge_end = first_evaluated - dt.timedelta(days=horizon_days)
    fit = (dates <= purge_end).to_numpy()
    evaluation = dates.isin(evaluated).to_numpy()
    eval_names = [d.isoformat() for d in evaluated]
    fitted_dates = sorted(set(dates[fit]))
    fit_cutoff = fitted_dates[-1].isoformat() if fitted_dates else None
    empty = np.zeros(len(dates), dtype=bool)
    if not fit.any():
        why = (
            f"no as-of date in the training window is {horizon_days} days or more before the "
            f"evaluation date {first_evaluated} (window {distinct[0]}..{distinct[-1]}); "
            "lengthen CHURN_TRAINING_WINDOW_DAYS or wait for more history"
        )
        return empty, empty, None, eval_names, why
    for side, mask in (("fitting", fit), ("evaluation", evaluation)):
        positives = int(labels[mask].sum())
        if positives < 5 or int(mask.sum()) - positives < 5:
            why = (
                f"the out-of-time {side} rows have {positives} churned and "
                f"{int(mask.sum()) - positives} retained; need at least 5 of each"
            )
            return empty, empty, fit_cutoff, eval_names, why
    return fit, evaluation, fit_cutoff, eval_names, ""


def train_churn_model(
    table: pd.DataFrame,
    id_column: str = ID_COLUMN,
    label_column: str = LABEL_COLUMN,
    exclude: Sequence[str] = NON_FEATURE_COLUMNS,
    seed: int = 0,
    test_fraction: float = 0.25,
    as_of_column: str = AS_OF_COLUMN,
    horizon_days: int = LABEL_HORIZON_DAYS,
    evaluation_dates: int = 1,
) -> ChurnModel:
    """Train on any table with an id and a label column; numeric and categorical columns and
    missing values are handled by the pipeline.

    With an as-of column and enough history, the split is out of time (``out_of_time_masks``):
    fitted on the older as-of dates, evaluated on the latest ones, purged of ``horizon_days`` in
    between. Otherwise the evaluation rows are a ``test_fraction`` of customers, split by id (one
    customer's snapshots never sit on both sides) and stratified by label, and the model's
    ``split`` says so. The returned pipeline is the one evaluated: it is never refitted on the
    evaluation rows."""
    from sklearn.model_selection import StratifiedGroupKFold

    for column in (id_column, label_column):
        if column not in table.columns:
            raise TrainingDataError(f"training table has no {column!r} column")
    features = [c for c in table.columns if c not in {id_column, label_column, as_of_column, *exclude}]
    if not features:
        raise TrainingDataError("training table has no feature columns")
    y = table[label_column].astype(bool).to_numpy()
    positives = int(y.sum())
    if positives < 5 or len(y) - positives < 5:
        raise TrainingDataError(
            f"training table has {positives} churned and {len(y) - positives} retained rows; "
            "need at least 5 of each (widen the training window)"
        )
    X = table[features]
    numeric, categorical = split_columns(X)
    has_dates = as_of_column in table.columns
    if has_dates:
        fit, evaluation, fit_cutoff, eval_dates, why_not = out_of_time_masks(
            table[as_of_column], y, horizon_days, evaluation_dates
        )
    else:
        why_not = f"the table has no {as_of_column!r} column"
    if not why_not:
        kind = OUT_OF_TIME
        train_idx, test_idx = np.flatnonzero(fit), np.flatnonzero(evaluation)
    else:
        # Stratified by label and grouped by id: churners are rare, and an unstratified split can
        # leave the evaluation rows with one or two of them, which makes their metrics noise.
        kind = IN_WINDOW
        splitter = StratifiedGroupKFold(n_splits=round(1 / test_fraction), shuffle=True, random_state=seed)
        train_idx, test_idx = next(splitter.split(X, y, groups=table[id_column]))
        if len(set(y[test_idx])) < 2 or len(set(y[train_idx])) < 2:
            raise TrainingDataError("the train/test split left one side with a single class; add more data")
        dates = _dates(table[as_of_column]) if has_dates else None
        fit_cutoff = max(dates.iloc[train_idx]).isoformat() if has_dates else None
        eval_dates = sorted({d.isoformat() for d in dates.iloc[test_idx]}) if has_dates else []
    split = EvaluationSplit(
        kind=kind,
        fit_cutoff=fit_cutoff,
        evaluation_dates=eval_dates,
        fit_rows=len(train_idx),
        evaluation_rows=len(test_idx),
        fit_churn_rate=float(y[train_idx].mean()),
        evaluation_churn_rate=float(y[test_idx].mean()),
        purge_days=horizon_days if kind == OUT_OF_TIME else 0,
        reason=why_not,
    )

    pipeline = make_pipeline(numeric, categorical, seed)
    pipeline.fit(X.iloc[train_idx], y[train_idx])
    holdout_probabilities = pipeline.predict_proba(X.iloc[test_idx])[:, 1]
    metrics = evaluate(y[test_idx], holdout_probabilities)
    metrics.update({"train_rows": float(len(train_idx)), "test_rows": float(len(test_idx))})
    holdout_dates = [d.isoformat() for d in _dates(table[as_of_column]).iloc[test_idx]] if has_dates else []
    return ChurnModel(
        pipeline=pipeline,
        feature_columns=features,
        numeric_columns=numeric,
        categorical_columns=categorical,
        metrics=metrics,
        id_column=id_column,
        label_column=label_column,
        seed=seed,
        split=split,
        holdout=Holdout(
            X.iloc[test_idx].reset_index(drop=True), y[test_idx], holdout_probabilities, holdout_dates
        ),
    )
