"""The catalog answers who owns what: owners, descriptions, kinds, tags and code versions on every
asset (orchestration/governance.py), and previews of derived tables."""

import shutil

import dagster as dg
import pandas as pd
import pyarrow as pa

from churn_platform.definitions import build_definitions
from churn_platform.orchestration.governance import PACKAGE_ROOT, STAGES, code_version, stage_of
from churn_platform.storage.parquet_io_manager import preview_markdown
from churn_platform_tests.support.data import settings_for

TAGS = {"domain", "storage", "engine", "cost_centre"}


def _specs(settings) -> dict[dg.AssetKey, tuple[dg.AssetSpec, dg.AssetsDefinition]]:
    graph = build_definitions(settings).resolve_asset_graph()
    return {
        key: (graph.get(key).assets_def.specs_by_key[key], graph.get(key).assets_def)
        for key in graph.get_all_asset_keys()
    }


def test_every_asset_has_an_owner_description_kinds_tags_and_code_version(tmp_path):
    specs = _specs(settings_for(str(tmp_path)))
    assert len(specs) >= 15
    for key, (spec, asset) in specs.items():
        name = key.to_user_string()
        assert spec.owners and all(o.startswith("team:") for o in spec.owners), name
        assert spec.owners == list(STAGES[stage_of(asset)].owners), name
        assert spec.description and len(spec.description) > 40, name
        assert spec.kinds, name
        assert set(spec.tags) >= TAGS and all(spec.tags[t] for t in TAGS), (name, spec.tags)
        assert spec.code_version == code_version(stage_of(asset)), name
    by_name = {k.to_user_string(): s for k, (s, _) in specs.items()}
    assert by_name["ml/churn_model"].tags["storage"] == "model-registry"
    assert by_name["online/customer_features"].tags["storage"] == "online-store"
    assert by_name["raw/interaction_logs"].tags["engine"] == "duckdb"


def test_the_feature_engine_setting_is_the_engine_tag_of_the_sql_assets(tmp_path):
    specs = _specs(settings_for(str(tmp_path), CHURN_FEATURE_ENGINE="spark"))
    engines = {k.to_user_string(): s.tags["engine"] for k, (s, _) in specs.items()}
    assert engines["features/customer_features"] == "spark" and engines["ml/churn_labels"] == "spark"
    assert engines["ml/churn_model"] == "scikit-learn"


def test_a_change_to_a_stage_changes_its_code_version_only(tmp_path):
    root = tmp_path / "churn_platform"
    shutil.copytree(PACKAGE_ROOT, root, ignore=shutil.ignore_patterns("__pycache__"))
    before = {stage: code_version(stage, root) for stage in STAGES}
    assert before == {stage: code_version(stage) for stage in STAGES}  # the same files, the same digest
    rolling = root / "features" / "rolling.py"
    rolling.write_text(rolling.read_text() + "\n# a change\n")
    after = {stage: code_version(stage, root) for stage in STAGES}
    assert [s for s in STAGES if before[s] != after[s]] == ["features"]
    contract = next((root / "contracts").glob("features.py"))
    contract.write_text(contract.read_text() + "\n# a contract change touches every stage\n")
    assert all(code_version(s, root) != after[s] for s in STAGES)


def test_a_preview_rounds_numbers_and_cuts_long_texts():
    table = pa.Table.from_pandas(
        pd.DataFrame(
            {"customer_id": [1, 2, 3], "score": [0.123456789, None, 1.0], "note": ["x" * 80, "ok", "y"]}
        )
    )
    text = preview_markdown(table, 2)
    lines = text.splitlines()
    assert len(lines) == 4 and "0.1235" in text and "0.123456" not in text
    assert "x" * 57 + "..." in text and "x" * 58 not in text and "| 3 " not in text


def test_every_table_asset_describes_its_columns(tmp_path):
    """Every asset stored as a table (the warehouse) shows a column schema whose columns all have a
    description: the contracts of the raw and feature assets, contracts/derived.py for the rest."""
    specs = _specs(settings_for(str(tmp_path)))
    tables = [key for key, (spec, _) in specs.items() if spec.tags["storage"] == "warehouse"]
    assert len(tables) == 11
    for key in tables:
        schema = specs[key][0].metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), key.to_user_string()
        assert schema.columns and all(column.description for column in schema.columns), key.to_user_string()
