"""Settings: declared once, validated the same way everywhere, documented from the declarations."""

import dataclasses
import re
from pathlib import Path

import pytest

from churn_platform.settings import SettingsError, load_settings
from churn_platform.settings.declare import declared
from churn_platform.settings.docs import render_into, settings_tables
from churn_platform.settings.platform import SECTIONS

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_configuration_tables_are_generated_from_the_declarations():
    text = README.read_text()
    assert render_into(text) == text, "run `python -m churn_platform.settings.docs README.md`"
    for section in SECTIONS.values():
        for field in declared(section):
            assert f"| `{field.metadata['env']}` |" in settings_tables()


def test_every_variable_is_declared_once():
    variables = [f.metadata["env"] for section in SECTIONS.values() for f in declared(section)]
    assert len(variables) == len(set(variables))


def test_defaults_are_the_declared_ones():
    settings = load_settings({})
    for name, section in SECTIONS.items():
        for field in declared(section):
            if field.default is not None and not field.metadata["default_doc"]:
                assert getattr(getattr(settings, name), field.name) == field.default, field.metadata["env"]


INTEGERS = [
    (f.metadata["env"], f.metadata["minimum"])
    for s in SECTIONS.values()
    for f in declared(s)
    if f.type is int
]


@pytest.mark.parametrize("variable, minimum", INTEGERS)
def test_every_number_is_validated_naming_its_variable(variable, minimum):
    with pytest.raises(SettingsError, match=f"{variable}='many' is not an integer"):
        load_settings({variable: "many"})
    if minimum is not None:
        with pytest.raises(SettingsError, match=f"{variable} must be >= {minimum}, got {minimum - 1}"):
            load_settings({variable: str(minimum - 1)})


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("CHURN_START_DATE", "01/02/2026", "is not a YYYY-MM-DD date"),
        ("CHURN_INGESTION_CRON", "daily", "is not a five-field cron expression"),
        ("CHURN_RETRAINING_CRON", "0 3 * *", "is not a five-field cron expression"),
        ("CHURN_SCHEDULE_TIMEZONE", "Mars/Olympus", "is not an IANA time zone"),
        ("CHURN_FEATURE_ENGINE", "pandas", r"is not one of \['duckdb', 'spark'\]"),
        ("CHURN_ALERT_CRM_TICKETS", "maybe", "is not a boolean"),
    ],
)
def test_strings_with_a_shape_are_validated_naming_their_variable(variable, value, message):
    with pytest.raises(SettingsError, match=f"{variable}='{re.escape(value)}' {message}"):
        load_settings({variable: value})


def test_local_paths_follow_the_current_directory_not_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings.storage.data_root == str(tmp_path / "data")
    assert settings.mlflow.tracking_uri == f"sqlite:///{tmp_path}/data/mlflow/mlflow.db"


def test_secrets_are_recorded_by_name_never_by_value():
    settings = load_settings(
        {"SLACK_WEBHOOK_URL": "https://hooks.example/T0/B0/very-secret", "UNRELATED": "x"}
    )
    assert settings.secrets_set == frozenset({"SLACK_WEBHOOK_URL"})
    assert "very-secret" not in repr(settings) and "very-secret" not in repr(dataclasses.asdict(settings))
