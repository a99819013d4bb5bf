"""Who owns each asset and what it is, so the catalog answers "who owns what": owners, tags (domain,
storage, engine, cost centre) and a code version, added to every asset of the definitions.

Ownership follows the stage package an asset is defined in (one folder per stage). The code version
is a digest of that stage's source files (and of the shared data contracts): change the logic of a
stage and Dagster marks its assets' materializations as made by older code, nothing else does.
"""

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Stewardship:
    owners: tuple[str, ...]
    domain: str
    cost_centre: str


DATA_PLATFORM = ("team:data-platform",)
ML = ("team:ml",)
# By stage package (churn_platform/<stage>/).
STAGES: dict[str, Stewardship] = {
    "crm": Stewardship(DATA_PLATFORM, "customer-support", "data-platform"),
    "logs": Stewardship(DATA_PLATFORM, "product-usage", "data-platform"),
    "features": Stewardship(DATA_PLATFORM, "customer-features", "data-platform"),
    "ml": Stewardship(ML, "churn-model", "ml"),
    "online": Stewardship(ML, "real-time-scoring", "ml"),
    "inference": Stewardship(ML, "real-time-scoring", "ml"),
    "backups": Stewardship(DATA_PLATFORM, "recovery", "data-platform"),
}
# What stores an asset, from its kinds (first match).
STORAGE_BY_KIND = (
    ("parquet", "warehouse"),
    ("redis", "online-store"),
    ("jsonl", "backup-store"),
    ("json", "backup-store"),
    ("sqlite", "backup-store"),
    ("mlflow", "model-registry"),
)
# Stages whose tables get a few rows previewed on each materialization: derived numbers only, not
# the raw stages, whose rows hold customers' own words.
PREVIEW_STAGES = {"features": 5, "ml": 5}
# The definition metadata ParquetIOManager reads the preview's size from (its PREVIEW_ROWS_METADATA;
# the orchestration layer does not import storage).
PREVIEW_ROWS_METADATA = "preview_rows"
ENGINE_BY_KIND = (("duckdb", "duckdb"), ("scikitlearn", "scikit-learn"), ("pandas", "pandas"))


def stage_of(asset: dg.AssetsDefinition) -> str:
    compute = asset.op.compute_fn
    module = getattr(compute, "decorated_fn", compute).__module__
    return module.split(".")[1]


def code_version(stage: str, root: Path = PACKAGE_ROOT) -> str:
    """A digest of the stage's source files and the shared data contracts."""
    digest = hashlib.sha256()
    for folder in (root / stage, root / "contracts"):
        for path in sorted(folder.rglob("*")):
            if path.suffix in {".py", ".sql"}:
                digest.update(path.relative_to(root).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _first(kinds: Iterable[str], table: Sequence[tuple[str, str]], default: str) -> str:
    for kind, value in table:
        if kind in kinds:
            return value
    return default


def with_governance(assets: Sequence[dg.AssetsDefinition], feature_engine: str) -> list[dg.AssetsDefinition]:
    """Every asset with its stage's owners, its tags and its stage's code version. ``feature_engine``
    (duckdb or spark) is the engine of the SQL assets, which run on either."""
    versions: dict[str, str] = {}
    governed = []
    for asset in assets:
        if not asset.keys:  # checks only (the partition-deadline checks): nothing to own
            governed.append(asset)
            continue
        stage = stage_of(asset)
        stewardship = STAGES[stage]  # a new stage must say who owns it
        version = versions.setdefault(stage, code_version(stage))

        def govern(
            spec: dg.AssetSpec,
            stage: str = stage,
            stewardship: Stewardship = stewardship,
            version: str = version,
        ) -> dg.AssetSpec:
            tags = {
                "domain": stewardship.domain,
                "storage": _first(spec.kinds, STORAGE_BY_KIND, "warehouse"),
                # The SQL assets run on the configured feature engine (one SQL definition, two engines).
                "engine": feature_engine
                if "sql" in spec.kinds
                else _first(spec.kinds, ENGINE_BY_KIND, "python"),
                "cost_centre": stewardship.cost_centre,
            }
            metadata = {PREVIEW_ROWS_METADATA: PREVIEW_STAGES[stage]} if stage in PREVIEW_STAGES else {}
            merged = spec.merge_attributes(
                owners=[o for o in stewardship.owners if o not in spec.owners], tags=tags, metadata=metadata
            )
            return merged.replace_attributes(code_version=spec.code_version or version)

        governed.append(asset.map_asset_specs(govern))
    return governed
