"""Every raw and feature asset shows its contract in the UI: a column schema whose columns all have
a description, with the rules listed on the columns they check."""

import dagster as dg

from churn_platform.definitions import build_definitions
from churn_platform.settings import load_settings


def test_every_raw_and_feature_asset_declares_a_described_column_schema():
    graph = build_definitions(load_settings({})).resolve_asset_graph()
    contracted = [k for k in graph.get_all_asset_keys() if k.path[0] in ("raw", "features")]
    assert len(contracted) == 5
    for key in contracted:
        schema = graph.get(key).metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), key
        assert all(column.description for column in schema.columns), key
    logs = graph.get(dg.AssetKey(["raw", "interaction_logs"])).metadata["dagster/column_schema"]
    event_type = next(c for c in logs.columns if c.name == "event_type")
    assert any(rule.startswith("event_type_known") for rule in event_type.constraints.other)


def test_contract_checks_guard_the_raw_and_feature_assets():
    defs = build_definitions(load_settings({}))
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert {
        ("raw/interaction_logs", "contract"),
        ("raw/interaction_logs", "row_volume"),
        ("raw/crm_tickets", "contract"),
        ("raw/inference_logs", "contract"),
        ("features/customer_daily_activity", "contract"),
        ("features/customer_features", "contract"),
    } <= checks
