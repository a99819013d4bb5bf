"""Benchmarks of training the churn model.

Default: what MLflow tracking adds to training. Trains the platform's pipeline on a synthetic
customer table (1M rows, 30 features by default) twice in one run: without tracking, then with
everything the churn_model asset tracks (batch metrics/params, lineage, four plots, the model
logged with signature and input example, and a registered version) on a local SQLite store.
Writes bench/results/training.{json,md}.

``--backtest``: weekly retraining replayed over demo-shaped data (the demo's generator, seed and
customers; more days, 180 by default, so that enough weekly cutoffs have a full training window
and an out-of-time split). For each weekly cutoff: the training set as ml/training_set builds it,
a model trained and registered as ml/churn_model does (same split, metrics and version tags, on a
real SQLite MLflow store), the gate's inputs assembled by ``gate_inputs`` and decided by
``decide_promotion``, as the promotion-gate check does, with the platform's default settings.
Prints per cutoff the candidate's and the champion's ROC AUC on the candidate's unseen
evaluation rows, the interval of their difference, the decision, the expected saving, and the
champion after the decision; then checks the expected outcome. Writes
bench/results/training_backtest.{json,md}.

    .venv/bin/python bench/training.py [--rows 1000000] [--features 30] [--smoke]
    .venv/bin/python bench/training.py --backtest [--days 180] [--customers 1000] [--cutoffs 12]

``--smoke``: both, at tiny sizes (2,000 rows x 8 features; a 2-cutoff backtest of 90 days x 200
customers), results to temporary directories.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import sys
import tempfile
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import add_smoke_flag, write_results
from churn_platform.cli.demo import DemoPlan
from churn_platform.crm.sentiment import score_ticket_sentiment
from churn_platform.crm.tickets import normalize_tickets
from churn_platform.features.activity import compute_daily_activity
from churn_platform.features.rolling import compute_customer_features
from churn_platform.logs.parsing import combine_logs, parse_log_file
from churn_platform.ml.assets import ChurnModelConfig, TrainingSetConfig
from churn_platform.ml.business import Costs
from churn_platform.ml.checks import PromotionGateConfig
from churn_platform.ml.labels import compute_churn_labels
from churn_platform.ml.plots import evaluation_figures
from churn_platform.ml.promotion import (
    COMPARED,
    BootstrapSettings,
    Challenger,
    decide_promotion,
    evaluation_metrics,
    gate_inputs,
)
from churn_platform.ml.training import (
    build_training_set,
    train_churn_model,
    training_as_of_dates,
    training_lineage,
)
from churn_platform.orchestration.partitions import LABEL_HORIZON_DAYS
from churn_platform.settings import load_settings
from churn_platform.storage.model_registry import MLflowTracking
from churn_platform.synthetic.generator import events_to_jsonl, generate


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


def tracking_benchmark(rows: int, features: int, store: str, smoke: bool) -> None:
    """``store``: a directory for the MLflow store (SQLite and artifacts)."""
    table = customer_table(rows, features)

    started = time.perf_counter()
    plain = train_churn_model(table, seed=0)
    without = time.perf_counter() - started

    tracking = MLflowTracking(
        tracking_uri=f"sqlite:///{store}/mlflow.db", artifact_location=f"{store}/artifacts"
    )
    tracking.experiment_id(tracking.client())  # create the store outside the timing, as in a running platform
    started = time.perf_counter()
    model = train_churn_model(table, seed=0)
    fit_done = time.perf_counter()
    holdout = model.holdout
    record = tracking.log_training(
        model.pipeline,
        holdout.features,
        {"seed": 0},
        model.metrics,
        {"bench": "training"},
        training_lineage("2026-03-31", table, []),
        evaluation_figures(holdout.labels, holdout.probabilities, model.pipeline, holdout.features, 0),
        "bench",
    )
    tracking.promote(record.version, "bench")
    with_tracking = time.perf_counter() - started
    tracking_only = time.perf_counter() - fit_done
    assert plain.metrics == model.metrics  # same training both times

    results = {
        "rows": rows,
        "features": features,
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
                f"Training the churn pipeline on {rows:,} rows x {features} features, with and without MLflow tracking:",
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
    write_results("training", results, markdown, smoke=smoke)


# -- the backtest of weekly retraining -------------------------------------------------------------------
DEMO_START, DEMO_SEED = dt.date(2026, 1, 1), 7  # the demo's generator settings (`churn-platform demo`)


def demo_tables(days: int, customers: int, seed: int = DEMO_SEED):
    """Daily activity of generated demo data, through the platform's own steps: landing files
    parsed as raw/interaction_logs parses them, tickets normalized and scored for sentiment, then
    the daily-activity aggregation (DuckDB). Returns (activity, stats)."""
    data = generate(DEMO_START, days=days, customers=customers, seed=seed)
    logs = combine_logs(
        [
            parse_log_file(
                f"generated/{d.date}.jsonl", events_to_jsonl(d.events).encode(), d.date.isoformat()
            )
            for d in data.event_days
        ]
    )
    sentiment = score_ticket_sentiment(normalize_tickets(data.tickets))
    activity = compute_daily_activity(logs, sentiment)
    stats = {"events": len(logs), "tickets": len(data.tickets), "activity_rows": len(activity)}
    return activity, stats


def weekly_cutoffs(last: str, count: int) -> list[str]:
    end = dt.date.fromisoformat(last)
    return [(end - dt.timedelta(days=7 * k)).isoformat() for k in reversed(range(count))]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "none" if value is None else f"{value:.{digits}f}"


def run_backtest(days: int, customers: int, cutoff_count: int, store: str, smoke: bool) -> None:
    """``store``: a directory for the MLflow store (SQLite and artifacts); the backtest registers its
    versions under a model name of its own."""
    settings = load_settings({"CHURN_START_DATE": DEMO_START.isoformat()})
    window_days = settings.pipeline.training_window_days
    step_days = TrainingSetConfig().sample_every_days
    model_config, gate_config = ChurnModelConfig(), PromotionGateConfig()
    costs = Costs(settings.promotion.missed_churner, settings.promotion.retention_offer)
    thresholds = gate_config.thresholds()
    bootstrap = BootstrapSettings(resamples=model_config.bootstrap_resamples, seed=model_config.seed)
    plan = DemoPlan.for_days(DEMO_START, days)
    cutoffs = weekly_cutoffs(plan.last_labelled_day, cutoff_count)
    as_of = {c: training_as_of_dates(c, window_days, step_days) for c in cutoffs}
    all_dates = sorted({d for dates in as_of.values() for d in dates if d >= plan.first_day})

    started = time.perf_counter()
    activity, stats = demo_tables(days, customers)
    features = compute_customer_features(activity, all_dates)
    labels = compute_churn_labels(activity, all_dates)
    data_s = time.perf_counter() - started
    print(
        f"demo data: {days} days x {customers} customers (seed {DEMO_SEED}), {stats['events']:,} events, "
        f"{stats['tickets']:,} tickets; features and labels for {len(all_dates)} as-of dates in {data_s:.0f} s"
    )

    rows: list[dict] = []
    started = time.perf_counter()
    tracking = MLflowTracking(
        tracking_uri=f"sqlite:///{store}/mlflow.db",
        artifact_location=f"{store}/artifacts",
        experiment_name="training_backtest",
        model_name="churn_model_backtest",
    )
    for cutoff in cutoffs:
        # ml/training_set, then ml/churn_model (without its plots and model card), then the gate check.
        table = build_training_set(features, labels, as_of[cutoff])
        model = train_churn_model(
            table,
            seed=model_config.seed,
            horizon_days=LABEL_HORIZON_DAYS,
            evaluation_dates=model_config.evaluation_dates,
        )
        holdout, split = model.holdout, model.split
        metrics = evaluation_metrics(model, model_config.decision_threshold, costs)
        record = tracking.log_training(
            model.pipeline,
            holdout.features,
            {"seed": model_config.seed, "training_cutoff": cutoff},
            metrics,
            {"bench": "training_backtest"},
            training_lineage(cutoff, table, []),
            {},
            f"churn_model {cutoff}",
        )
        tracking.tag_version(record.version, {"training_cutoff": cutoff, **split.as_tags()})
        champion = tracking.champion_record()
        inputs = gate_inputs(
            Challenger(record.version, cutoff, split, metrics, holdout),
            champion,
            lambda champion=champion: tracking.load_version(champion["version"])[0],
            costs,
            bootstrap,
            LABEL_HORIZON_DAYS,
        )
        decision = decide_promotion(inputs, thresholds, tracking)
        incumbent = inputs["champion"]
        compared = incumbent is not None and incumbent["status"] == COMPARED
        comparison = incumbent["comparison"] if compared else None
        champion_auc = incumbent["metrics"]["roc_auc"] if compared else None
        champion_saving = incumbent["metrics"].get("expected_saving_per_customer", 0.0) if compared else None
        after = tracking.champion_version()
        # The serving champion's out-of-time ROC AUC on this week's unseen rows.
        if after == record.version:
            after_auc = metrics["roc_auc"]
        elif compared:
            after_auc = champion_auc
        else:
            after_auc = None
        rows.append(
            {
                "cutoff": cutoff,
                "version": record.version,
                "split": split.kind,
                "fit_cutoff": split.fit_cutoff,
                "evaluation_dates": split.evaluation_dates,
                "evaluation_rows": split.evaluation_rows,
                "evaluation_churned": int(holdout.labels.sum()),
                "candidate_roc_auc": metrics["roc_auc"],
                "candidate_saving_per_customer": metrics["expected_saving_per_customer"],
                "champion_before": incumbent["version"] if incumbent else None,
                "champion_status": incumbent["status"] if incumbent else None,
                "champion_roc_auc": champion_auc,
                "champion_saving_per_customer": champion_saving,
                "auc_difference": comparison["auc_difference"] if comparison else None,
                "auc_difference_ci": comparison["auc_difference_ci"] if comparison else None,
                "saving_difference_ci": comparison["saving_difference_ci"] if comparison else None,
                "promoted": decision.passed,
                "reasons": decision.reasons,
                "champion_after": after,
                "champion_after_roc_auc": after_auc,
            }
        )
        row = rows[-1]
        print(
            f"cutoff {cutoff}: candidate v{row['version']} AUC {row['candidate_roc_auc']:.3f}, champion "
            + (
                f"v{row['champion_before']} AUC {champion_auc:.3f}, difference {row['auc_difference']:+.3f} "
                f"[{row['auc_difference_ci'][0]:+.3f}, {row['auc_difference_ci'][1]:+.3f}]"
                if compared
                else (f"v{row['champion_before']} ({row['champion_status']})" if incumbent else "none")
            )
            + f"; {'promoted' if decision.passed else 'rejected'}; champion after: "
            + (f"v{after} (AUC {_fmt(after_auc)})" if after else "none"),
            flush=True,
        )
    loop_s = time.perf_counter() - started

    results, markdown = backtest_report(rows, thresholds, days, customers, window_days, step_days, costs)
    results.update({"data_s": round(data_s, 1), "train_and_gate_s": round(loop_s, 1)})
    write_results("training_backtest", results, markdown, smoke=smoke)


def backtest_report(rows, thresholds, days, customers, window_days, step_days, costs) -> tuple[dict, str]:
    tolerance = thresholds.auc_tolerance
    compared = [r for r in rows if r["champion_status"] == COMPARED]
    better = [r for r in compared if r["auc_difference"] > 0]
    better_rejected = [r["cutoff"] for r in better if not r["promoted"]]
    worse_promoted = [r["cutoff"] for r in compared if r["auc_difference"] <= 0 and r["promoted"]]
    # Week to week: the serving champion's AUC on each week's own unseen rows.
    # Each change splits into the last champion's change from last week's rows to this week's
    # ("new_rows": no model changed) and the decision's effect on this week's rows ("decision").
    serving = [r for r in rows if r["champion_after_roc_auc"] is not None]
    weekly_changes = []
    for last, this in zip(serving, serving[1:], strict=False):
        change = {"from": last["cutoff"], "to": this["cutoff"]}
        change["change"] = this["champion_after_roc_auc"] - last["champion_after_roc_auc"]
        if this["champion_status"] == COMPARED and this["champion_before"] == last["champion_after"]:
            change["new_rows"] = this["champion_roc_auc"] - last["champion_after_roc_auc"]
            change["decision"] = this["champion_after_roc_auc"] - this["champion_roc_auc"]
        weekly_changes.append(change)
    weekly_drops = [w for w in weekly_changes if w["change"] < -tolerance]
    # At each decision, on the same rows: the champion after minus the champion before.
    same_rows = [
        {"cutoff": r["cutoff"], "change": r["auc_difference"] if r["promoted"] else 0.0} for r in compared
    ]
    same_rows_drops = [s for s in same_rows if s["change"] < -tolerance]
    summary = {
        "cutoffs": len(rows),
        "promoted": sum(r["promoted"] for r in rows),
        "compared": len(compared),
        "candidate_better": len(better),
        "better_candidates_rejected": better_rejected,
        "worse_candidates_promoted": worse_promoted,
        "auc_tolerance": tolerance,
        "largest_week_to_week_drop": round(max([0.0] + [-w["change"] for w in weekly_changes]), 4),
        "week_to_week_drops_beyond_tolerance": weekly_drops,
        "largest_same_rows_drop_at_a_decision": round(max([0.0] + [-s["change"] for s in same_rows]), 4),
        "same_rows_drops_beyond_tolerance": same_rows_drops,
        "promotions_when_better": not better_rejected,
        "week_to_week_within_tolerance": not weekly_drops,
    }
    results = {
        "days": days,
        "customers": customers,
        "seed": DEMO_SEED,
        "training_window_days": window_days,
        "sample_every_days": step_days,
        "costs": {"missed_churner": costs.missed_churner, "retention_offer": costs.retention_offer},
        "thresholds": dataclasses.asdict(thresholds),
        "summary": summary,
        "cutoffs": rows,
    }

    lines = [
        f"Weekly retraining replayed over {len(rows)} cutoffs of demo-shaped data ({days} days x "
        f"{customers:,} customers, seed {DEMO_SEED}; {window_days}-day training window, one snapshot "
        f"every {step_days} days; fitted up to the cutoff - 35 days, evaluated out of time on the cutoff's "
        "active customers). AUCs are ROC AUC on the candidate's evaluation rows, which neither model was "
        f"fitted on; saving: expected saving per customer at each model's best threshold (missed churner "
        f"{costs.missed_churner:g}, retention offer {costs.retention_offer:g}).",
        "",
        "| cutoff | rows (churned) | candidate AUC | champion AUC | difference [95% CI] | saving: candidate / champion | decision | champion after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        status = r["champion_status"]
        if status == COMPARED:
            champion = f"{r['champion_roc_auc']:.3f} (v{r['champion_before']})"
            lo, hi = r["auc_difference_ci"]
            difference = f"{r['auc_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            saving = f"{r['candidate_saving_per_customer']:.2f} / {r['champion_saving_per_customer']:.2f}"
        else:
            champion = "none" if status is None else f"not comparable (v{r['champion_before']}: {status})"
            difference = "-"
            saving = f"{r['candidate_saving_per_customer']:.2f} / -"
        decision = "promoted" if r["promoted"] else "rejected: " + "; ".join(r["reasons"])[:160]
        after = (
            f"v{r['champion_after']} ({_fmt(r['champion_after_roc_auc'])})" if r["champion_after"] else "none"
        )
        lines.append(
            f"| {r['cutoff']} (v{r['version']}) | {r['evaluation_rows']} ({r['evaluation_churned']}) | "
            f"{r['candidate_roc_auc']:.3f} | {champion} | {difference} | {saving} | {decision} | {after} |"
        )
    lines += [
        "",
        f"Promotions: {summary['promoted']} of {len(rows)} cutoffs; {len(compared)} compared with a champion, "
        f"{len(better)} of them with a better candidate (point estimate), "
        + (
            ("all promoted." if better else "none to promote on that ground.")
            if not better_rejected
            else f"of which rejected: {', '.join(better_rejected)}."
        )
        + (
            f" Promoted although not better (within the tolerance): {', '.join(worse_promoted)}."
            if worse_promoted
            else ""
        ),
        f"Champion's out-of-time AUC week to week (each week's own unseen rows): largest drop "
        f"{summary['largest_week_to_week_drop']:.3f} vs the tolerance {tolerance}; "
        + (
            "never beyond it."
            if not weekly_drops
            else f"{len(weekly_drops)} drop(s) beyond it: "
            + "; ".join(
                f"{w['from']} -> {w['to']} {w['change']:+.3f}"
                + (
                    f" (the previous champion on the new rows {w['new_rows']:+.3f}, "
                    f"the decision {w['decision']:+.3f})"
                    if "new_rows" in w
                    else ""
                )
                for w in weekly_drops
            )
            + "."
        ),
        f"On the same rows at each decision (champion after minus before): largest drop "
        f"{summary['largest_same_rows_drop_at_a_decision']:.3f}; "
        + (
            "never beyond the tolerance."
            if not same_rows_drops
            else ", ".join(f"{s['cutoff']} {s['change']:+.3f}" for s in same_rows_drops) + " beyond it."
        ),
    ]
    return results, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--backtest", action="store_true", help="run the weekly retraining backtest instead")
    parser.add_argument("--days", type=int, default=180, help="backtest: days of generated demo data")
    parser.add_argument("--customers", type=int, default=1000, help="backtest: customers (the demo's 1,000)")
    parser.add_argument(
        "--cutoffs", type=int, default=12, help="backtest: weekly cutoffs, ending at the last labelled day"
    )
    add_smoke_flag(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:  # one MLflow store (creating one takes seconds)
        if args.smoke:
            tracking_benchmark(2_000, 8, store, smoke=True)
            run_backtest(days=90, customers=200, cutoff_count=2, store=store, smoke=True)
        elif args.backtest:
            run_backtest(args.days, args.customers, args.cutoffs, store, smoke=False)
        else:
            tracking_benchmark(args.rows, args.features, store, smoke=False)


if __name__ == "__main__":
    main()
