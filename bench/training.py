"""Benchmark: what MLflow tracking adds to training the churn model.

Trains the platform's pipeline on a synthetic customer table (1M rows, 30 features by default)
twice in one run: without tracking, then with everything the churn_model asset tracks (batch
metrics/params, lineage, four plots, the model logged with signature and input example, and a
registered version) on a local SQLite store. Writes bench/results/training.{json,md}.

    .venv/bin/python bench/training.py [--rows 1000000] [--features 30] [--smoke]

``--smoke``: 2,000 rows x 8 features, results to a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results
from churn_platform.ml.plots import evaluation_figures
from churn_platform.ml.tracking import MLflowTracking
from churn_platform.ml.training import train_churn_model, training_lineage


def customer_table(rows: int, features: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    numeric = features - 4
    X = rng.normal(size=(rows, numeric))
    X[rng.random((rows, numeric)) < 0.05] = np.nan  # missing values, as in real feature tables
    weights = rng.normal(size=numeric) * (rng.random(numeric) < 0.4)
    plan = rng.choice(["basic", "pro", "enterprise"], rows)
    risk = np.nan_to_num(X) @ weights + np.where(plan == "basic", 0.8, 0.0) + rng.normal(0, 1.5, rows)
    table = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(numeric)])
    table["plan"] = pd.Series(plan, dtype="string")
    for i in range(3):
        table[f"segment_{i}"] = pd.Series(rng.choice(list("abcdefgh"), rows), dtype="string")
    table["customer_id"] = np.arange(rows)
    table["as_of_date"] = "2026-03-31"
    table["churned"] = risk > np.quantile(risk, 0.95)
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    add_smoke_flag(parser)
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.features = 2_000, 8
    table = customer_table(args.rows, args.features)

    started = time.perf_counter()
    plain = train_churn_model(table, seed=0)
    without = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        tracking = MLflowTracking(
            tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=f"{tmp}/artifacts"
        )
        tracking.experiment_id(
            tracking.client()
        )  # create the store outside the timing, as in a running platform
        started = time.perf_counter()
        model = train_churn_model(table, seed=0)
        fit_done = time.perf_counter()
        holdout = model.holdout
        tracking.log_training(
            model.pipeline,
            holdout.features,
            {"seed": 0},
            model.metrics,
            {"bench": "training"},
            training_lineage("2026-03-31", table, []),
            evaluation_figures(holdout.labels, holdout.probabilities, model.pipeline, holdout.features, 0),
            "bench",
        )
        tracking.promote("1", "bench")
        with_tracking = time.perf_counter() - started
        tracking_only = time.perf_counter() - fit_done
    assert plain.metrics == model.metrics  # same training both times

    results = {
        "rows": args.rows,
        "features": args.features,
        "train_without_tracking_s": round(without, 2),
        "train_with_tracking_s": round(with_tracking, 2),
        "tracking_s": round(tracking_only, 2),
        "overhead_vs_fit": round(tracking_only / (fit_done - started), 4),
        "overhead_between_runs": round(with_tracking / without - 1, 4),
        "roc_auc": round(model.metrics["roc_auc"], 4),
    }
    markdown = (
        "\n".join(
            [
                f"Training the churn pipeline on {args.rows:,} rows x {args.features} features, with and without MLflow tracking:",
                "",
                "| | seconds |",
                "|---|---|",
                f"| fit + hold-out evaluation, no tracking | {without:.1f} |",
                f"| fit + hold-out evaluation + tracking | {with_tracking:.1f} |",
                f"| of which tracking (metrics, plots, lineage, model, registry) | {tracking_only:.1f} |",
                "",
                f"Tracking overhead: {100 * results['overhead_vs_fit']:.1f}% of that run's fit time "
                f"({100 * results['overhead_between_runs']:+.1f}% between the two runs, which includes run-to-run noise).",
            ]
        )
        + "\n"
    )
    write_results("training", results, markdown, smoke=args.smoke)


if __name__ == "__main__":
    main()
