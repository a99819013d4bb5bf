"""The served pipeline compiled into numpy operations, for scoring a few rows without pandas.

`pipeline.predict_proba` on one row costs milliseconds, nearly all of it overhead: the
ColumnTransformer selects columns with pandas and validates them, each transformer validates again,
and HistGradientBoosting calls its Cython predictor once per tree, each call opening an OpenMP
parallel region. What the fitted pipeline computes is small: replace missing numbers by the
imputer's statistics, append the missing-value indicators, one-hot encode the categories, walk 200
shallow trees and add up their leaves. `compile_pipeline` reads those fitted attributes once:

- the ColumnTransformer's `transformers_`, in order (their outputs are concatenated in that order);
- numeric blocks, a `SimpleImputer` (missing values NaN): `statistics_`, `keep_empty_features`
  and the `indicator_.features_` of `add_indicator`;
- categorical blocks, the pipeline `make_pipeline` builds (`training._as_object`, a
  `SimpleImputer(strategy="constant")` and a dense float64 `OneHotEncoder(handle_unknown="ignore")`
  without dropped or infrequent categories): the fill value and `categories_`;
- the `HistGradientBoostingClassifier` (binary, no categorical splits): its trees' node arrays
  (`TreePredictor.nodes`, the records scikit-learn's own predictor walks) and baseline, flattened
  into arrays that numpy walks for all trees at once, one level per step. The leaves are added in
  the classifier's order, starting from its baseline (`np.cumsum` adds sequentially), and
  `scipy.special.expit` (what the classifier's log loss uses) gives the probability, so the result
  is the classifier's bit for bit. Larger batches go to the classifier's `_raw_predict` on the
  array with one thread (cheaper there than numpy's level-by-level walk).

Anything else (another transformer or parameter, a multi-class or categorical-split model, missing
attributes) raises `UnsupportedPipeline`: the pipeline is then served as it is.

Compiling is not trusted by itself: `prepare_fast_path` scores a verification frame built from the
model's own fitted attributes (every numeric column missing in turn, values at, just below and just
above every split threshold, every known category, an unseen one, missing categoricals, random
mixtures) with both the compiled function and `pipeline.predict_proba`, and serves the compiled
function only if the probabilities are identical (`np.array_equal`). The stored rows of a feature
schema are checked once more the first time that schema is met (`FastPath.accepts`): typed as the
schema types them (integers, booleans), read back through `online.store.rows_to_frame` for the
pipeline. Whatever fails is logged once and scored by the pipeline.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from churn_platform.ml.training import _as_object
from churn_platform.online.store import rows_to_frame

log = logging.getLogger(__name__)

# The numpy walk costs about rows x trees x depth element operations, the classifier's own walk a
# fixed ~1 ms (a Cython call per tree) plus little per row: batches up to
# NUMPY_WALK_ROW_LEVELS / depth rows walk in numpy (512 rows for trees 4 levels deep, measured).
NUMPY_WALK_ROW_LEVELS = 2048
NUMPY_CHUNK_ROWS = 256  # the numpy walk's rows per step (bounds its (rows x trees) arrays)
UNSEEN_CATEGORY = "__fast_path_unseen_category__"

Record = Mapping[str, Any]


class UnsupportedPipeline(ValueError):
    """The pipeline holds something the compiler does not reproduce; the message says what."""


# -- the preprocessing --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _NumericBlock:
    """A SimpleImputer over numeric columns (NaN is missing), with its optional indicator."""

    columns: tuple[str, ...]
    statistics: np.ndarray  # float64, one per column: what replaces a missing value
    kept: np.ndarray  # indices of the columns output (all, unless keep_empty_features=False dropped some)
    indicated: np.ndarray  # indices of the columns whose missingness is output (indicator_.features_)
    start: int  # the first output column

    @property
    def width(self) -> int:
        return len(self.kept) + len(self.indicated)

    def write(self, values: np.ndarray, out: np.ndarray) -> None:
        """Impute ``values`` (rows x columns, float64; modified) into ``out``'s block."""
        missing = np.isnan(values)
        if missing.any():
            np.copyto(values, self.statistics, where=missing)
        if np.isinf(values).any():  # the pipeline's input validation refuses infinity too
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        kept, start = len(self.kept), self.start
        out[:, start : start + kept] = values if kept == len(self.columns) else values[:, self.kept]
        if len(self.indicated):
            out[:, start + kept : start + self.width] = missing[:, self.indicated]


@dataclass(frozen=True)
class _CategoricalBlock:
    """`_as_object`, SimpleImputer(constant) and OneHotEncoder(handle_unknown="ignore")."""

    columns: tuple[str, ...]
    fill_values: tuple[Any, ...]  # what a missing value becomes, per column
    positions: tuple[dict[Any, int], ...]  # per column: category -> its output column (absolute)
    start: int
    width: int

    def write(
        self, columns: Sequence[Sequence[Any]], missing: Sequence[Sequence[bool]], out: np.ndarray
    ) -> None:
        """One-hot ``columns`` (each a sequence of the rows' values, with its missing flags) into
        ``out``; an unknown category is all zeros."""
        for values, absent, fill, positions in zip(
            columns, missing, self.fill_values, self.positions, strict=True
        ):
            for row, (value, is_missing) in enumerate(zip(values, absent, strict=True)):
                position = positions.get(fill if is_missing else value)
                if position is not None:
                    out[row, position] = 1.0


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _numeric_block(name: str, imputer: Any, columns: list[str], start: int) -> _NumericBlock:
    if type(imputer) is not SimpleImputer:
        raise UnsupportedPipeline(f"transformer {name!r} is a {type(imputer).__name__}, not a SimpleImputer")
    if not (isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values)):
        raise UnsupportedPipeline(f"transformer {name!r} imputes {imputer.missing_values!r}, not NaN")
    statistics = np.asarray(imputer.statistics_)
    fill_dtype = getattr(imputer, "_fill_dtype", None)
    if statistics.dtype != np.float64 or fill_dtype != np.float64:
        raise UnsupportedPipeline(f"transformer {name!r} was fitted on {fill_dtype}, not float64")
    if statistics.shape != (len(columns),):
        raise UnsupportedPipeline(
            f"transformer {name!r} has {statistics.shape} statistics for {len(columns)} columns"
        )
    # keep_empty_features=False drops the columns that had no value at fit (NaN statistics).
    kept = np.arange(len(columns)) if imputer.keep_empty_features else np.flatnonzero(~np.isnan(statistics))
    if np.isnan(statistics[kept]).any():
        raise UnsupportedPipeline(f"transformer {name!r} has NaN statistics for kept columns")
    indicated = np.array([], dtype=np.intp)
    if imputer.add_indicator:
        indicator = imputer.indicator_
        if indicator.sparse not in ("auto", False):
            raise UnsupportedPipeline(f"transformer {name!r} has a sparse missing indicator")
        indicated = np.asarray(indicator.features_, dtype=np.intp)
    return _NumericBlock(tuple(columns), statistics.copy(), kept, indicated, start)


def _categorical_block(name: str, steps: Any, columns: list[str], start: int) -> _CategoricalBlock:
    if type(steps) is not Pipeline or len(steps.steps) != 3:
        raise UnsupportedPipeline(
            f"transformer {name!r} is not the categorical pipeline make_pipeline builds"
        )
    to_object, imputer, encoder = (step for _, step in steps.steps)
    if (
        type(to_object) is not FunctionTransformer
        or to_object.func is not _as_object
        or to_object.inverse_func is not None
        or to_object.kw_args
        or to_object.validate
    ):
        raise UnsupportedPipeline(f"transformer {name!r} does not start with FunctionTransformer(_as_object)")
    if (
        type(imputer) is not SimpleImputer
        or imputer.strategy != "constant"
        or imputer.add_indicator
        or not (isinstance(imputer.missing_values, float) and math.isnan(imputer.missing_values))
    ):
        raise UnsupportedPipeline(
            f"transformer {name!r}: its imputer is not SimpleImputer(strategy='constant')"
        )
    if (
        type(encoder) is not OneHotEncoder
        or encoder.handle_unknown != "ignore"
        or encoder.drop is not None
        or encoder.sparse_output
        or np.dtype(encoder.dtype) != np.float64
        or encoder.min_frequency is not None
        or encoder.max_categories is not None
    ):
        raise UnsupportedPipeline(
            f"transformer {name!r}: its encoder is not a dense float64 OneHotEncoder(handle_unknown='ignore') "
            "without dropped or infrequent categories"
        )
    fill_values = tuple(imputer.statistics_.tolist())
    if len(fill_values) != len(columns) or len(encoder.categories_) != len(columns):
        raise UnsupportedPipeline(f"transformer {name!r} was fitted on other columns")
    positions, offset = [], start
    for categories in encoder.categories_:
        values = categories.tolist()
        if any(_is_missing(v) for v in values) or len(set(values)) != len(values):
            raise UnsupportedPipeline(f"transformer {name!r} has missing or repeated categories")
        positions.append({value: offset + i for i, value in enumerate(values)})
        offset += len(values)
    return _CategoricalBlock(tuple(columns), fill_values, tuple(positions), start, offset - start)


# -- the trees ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Trees:
    """All trees of a binary HistGradientBoostingClassifier as flat arrays: a leaf points to itself,
    so walking ``depth`` levels from the roots ends on every tree's leaf."""

    roots: np.ndarray  # intp, one per tree, in the classifier's order
    feature: np.ndarray  # intp, per node
    threshold: np.ndarray  # float64
    missing_left: np.ndarray  # bool
    left: np.ndarray  # intp (absolute)
    right: np.ndarray  # intp (absolute)
    value: np.ndarray  # float64 (leaves)
    depth: int
    baseline: float
    width: int  # features expected

    def split_thresholds(self, feature: int) -> np.ndarray:
        splits = (self.left != np.arange(len(self.left))) & (self.feature == feature)
        return np.unique(self.threshold[splits])

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The classifier's raw prediction (log odds) of each row of ``X``."""
        n, width = X.shape
        flat = X.ravel()
        row_offsets = (np.arange(n, dtype=np.intp) * width)[:, None]
        node = np.broadcast_to(self.roots, (n, len(self.roots)))
        if np.isnan(flat).any():
            for _ in range(self.depth):
                values = flat[row_offsets + self.feature[node]]
                go_left = np.where(np.isnan(values), self.missing_left[node], values <= self.threshold[node])
                node = np.where(go_left, self.left[node], self.right[node])
        else:
            for _ in range(self.depth):
                go_left = flat[row_offsets + self.feature[node]] <= self.threshold[node]
                node = np.where(go_left, self.left[node], self.right[node])
        # scikit-learn starts from zeros, adds the baseline, then each tree's value in turn.
        terms = np.empty((n, len(self.roots) + 2))
        terms[:, 0] = 0.0
        terms[:, 1] = self.baseline
        terms[:, 2:] = self.value[node]
        return np.cumsum(terms, axis=1)[:, -1]


def _trees(model: Any, width: int) -> _Trees:
    if type(model) is not HistGradientBoostingClassifier:
        raise UnsupportedPipeline(
            f"the model is a {type(model).__name__}, not a HistGradientBoostingClassifier"
        )
    if len(model.classes_) != 2 or model.n_trees_per_iteration_ != 1 or model.loss != "log_loss":
        raise UnsupportedPipeline("the model is not a binary log-loss classifier")
    if getattr(model, "is_categorical_", None) is not None:
        raise UnsupportedPipeline("the model has categorical features")
    if hasattr(model, "feature_names_in_") or model.n_features_in_ != width:
        raise UnsupportedPipeline(
            f"the model expects {model.n_features_in_} unnamed features; the preprocessing gives {width}"
        )
    try:
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64)
        nodes = [predictors[0].nodes for predictors in model._predictors]
        if baseline.shape != (1, 1) or any(len(p) != 1 for p in model._predictors):
            raise UnsupportedPipeline("the model's baseline or trees are not those of a binary classifier")
    except (AttributeError, IndexError, TypeError) as exc:
        raise UnsupportedPipeline(f"the model's trees cannot be read ({type(exc).__name__}: {exc})") from None
    if not nodes:
        raise UnsupportedPipeline("the model has no trees")
    sizes = [len(n) for n in nodes]
    every = np.concatenate(nodes)
    if every["is_categorical"].any():
        raise UnsupportedPipeline("the model has categorical splits")
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
    shift = np.repeat(offsets, sizes)
    index = np.arange(len(every), dtype=np.intp)
    leaf = every["is_leaf"].astype(bool)
    left = np.where(leaf, index, every["left"].astype(np.intp) + shift)
    right = np.where(leaf, index, every["right"].astype(np.intp) + shift)
    feature = np.where(leaf, 0, every["feature_idx"].astype(np.intp))
    if (feature < 0).any() or (feature >= width).any():
        raise UnsupportedPipeline("the model's trees split on features it does not have")
    return _Trees(
        roots=offsets,
        feature=feature,
        threshold=every["num_threshold"].astype(np.float64),
        missing_left=every["missing_go_to_left"].astype(bool),
        left=left,
        right=right,
        value=every["value"].astype(np.float64),
        depth=int(every["depth"].max()),
        baseline=float(baseline[0, 0]),
        width=width,
    )


# -- the compiled pipeline ----------------------------------------------------------------------------
def _frame_numeric_dtype_ok(dtype: Any) -> bool:
    # The pipeline converts numeric columns to float64 unless they are all float32/float16;
    # extension dtypes (nullable) take other conversions: both are left to the pipeline.
    return isinstance(dtype, np.dtype) and (dtype.kind in "biuO" or dtype == np.float64)


def _frame_categorical_dtype_ok(dtype: Any) -> bool:
    return (isinstance(dtype, np.dtype) and dtype.kind == "O") or isinstance(dtype, pd.StringDtype)


class CompiledPipeline:
    """The fitted pipeline's `predict_proba(...)[:, 1]` as numpy operations (see the module)."""

    def __init__(self, pipeline: Any) -> None:
        if type(pipeline) is not Pipeline or len(pipeline.steps) != 2:
            raise UnsupportedPipeline("not a two-step scikit-learn Pipeline (preprocess, model)")
        (_, preprocess), (_, model) = pipeline.steps
        if type(preprocess) is not ColumnTransformer:
            raise UnsupportedPipeline(
                f"the first step is a {type(preprocess).__name__}, not a ColumnTransformer"
            )
        if getattr(preprocess, "sparse_output_", True):
            raise UnsupportedPipeline("the ColumnTransformer's output is sparse")
        self.feature_names: tuple[str, ...] = tuple(str(c) for c in pipeline.feature_names_in_)
        self.numeric: list[_NumericBlock] = []
        self.categorical: list[_CategoricalBlock] = []
        width = 0
        for name, transformer, columns in preprocess.transformers_:
            if isinstance(transformer, str):
                if transformer == "drop":
                    continue
                raise UnsupportedPipeline(f"transformer {name!r} ({transformer!r}) is not supported")
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise UnsupportedPipeline(
                    f"transformer {name!r} selects {columns!r}, not a list of column names"
                )
            unknown = [c for c in columns if c not in self.feature_names]
            if unknown:
                raise UnsupportedPipeline(
                    f"transformer {name!r} reads {unknown}, not in the pipeline's features"
                )
            if not columns:
                continue  # an empty selection outputs nothing
            if isinstance(transformer, SimpleImputer):
                block: _NumericBlock | _CategoricalBlock = _numeric_block(name, transformer, columns, width)
                self.numeric.append(block)
            elif isinstance(transformer, Pipeline):
                block = _categorical_block(name, transformer, columns, width)
                self.categorical.append(block)
            else:
                raise UnsupportedPipeline(
                    f"transformer {name!r} ({type(transformer).__name__}) is not supported"
                )
            width += block.width
        self.width = width
        self.trees = _trees(model, width)
        self._model = model
        self.numeric_columns = tuple(c for b in self.numeric for c in b.columns)
        self.categorical_columns = tuple(c for b in self.categorical for c in b.columns)
        # Whether large batches go to the classifier's own walk (prepare_fast_path turns it off if
        # that walk does not verify).
        self.classifier_for_large_batches = True

    # -- features -------------------------------------------------------------------------------------
    def transform_records(self, records: Sequence[Record]) -> np.ndarray:
        """The model's input for rows as stored (JSON values: numbers, booleans, strings, None)."""
        out = np.zeros((len(records), self.width))
        for block in self.numeric:
            values = np.array([[r.get(c) for c in block.columns] for r in records], dtype=np.float64)
            block.write(values.reshape(len(records), len(block.columns)), out)
        for block in self.categorical:
            columns = [[r.get(c) for r in records] for c in block.columns]
            block.write(columns, [[_is_missing(v) for v in values] for values in columns], out)
        return out

    def transform_frame(self, frame: pd.DataFrame) -> np.ndarray | None:
        """The model's input for a DataFrame's rows, or None when its dtypes are ones the pipeline
        converts otherwise (float32, nullable, categorical dtypes: left to the pipeline)."""
        n = len(frame)
        out = np.zeros((n, self.width))
        for block in self.numeric:
            values = np.empty((n, len(block.columns)))
            for j, name in enumerate(block.columns):
                column = frame[name]
                if not isinstance(column, pd.Series) or not _frame_numeric_dtype_ok(column.dtype):
                    return None
                values[:, j] = column.to_numpy(dtype=np.float64)
            block.write(values, out)
        for block in self.categorical:
            columns, missing = [], []
            for name in block.columns:
                column = frame[name]
                if not isinstance(column, pd.Series) or not _frame_categorical_dtype_ok(column.dtype):
                    return None
                columns.append(column.to_numpy(dtype=object))
                missing.append(column.isna().to_numpy())
            block.write(columns, missing, out)
        return out

    # -- probabilities --------------------------------------------------------------------------------
    def _classifier_raw(self, X: np.ndarray) -> np.ndarray:
        return self._model._raw_predict(X, n_threads=1)[:, 0]

    def probabilities(self, X: np.ndarray, engine: str | None = None) -> np.ndarray:
        """The positive class's probability of each row of the model input ``X``. ``engine``:
        "numpy" (the flat trees), "classifier" (its `_raw_predict`) or None (by batch size)."""
        if engine is None:
            large = (
                len(X) * max(self.trees.depth, 1) > NUMPY_WALK_ROW_LEVELS
                and self.classifier_for_large_batches
            )
            engine = "classifier" if large else "numpy"
        if engine == "classifier":
            raw = self._classifier_raw(X)
        else:
            raw = (
                np.concatenate(
                    [self.trees.raw(X[i : i + NUMPY_CHUNK_ROWS]) for i in range(0, len(X), NUMPY_CHUNK_ROWS)]
                )
                if len(X)
                else np.empty(0)
            )
        return expit(raw)

    def predict_records(self, records: Sequence[Record], engine: str | None = None) -> np.ndarray:
        return self.probabilities(self.transform_records(records), engine)

    def predict_frame(self, frame: pd.DataFrame, engine: str | None = None) -> np.ndarray | None:
        X = self.transform_frame(frame)
        return None if X is None else self.probabilities(X, engine)


def compile_pipeline(pipeline: Any) -> CompiledPipeline:
    """The pipeline compiled; `UnsupportedPipeline` says why it cannot be."""
    try:
        return CompiledPipeline(pipeline)
    except UnsupportedPipeline:
        raise
    except (AttributeError, TypeError, ValueError, KeyError) as exc:  # e.g. an unfitted step
        raise UnsupportedPipeline(f"the pipeline cannot be read: {type(exc).__name__}: {exc}") from None


# -- verification -------------------------------------------------------------------------------------
NUMERIC_KINDS = ("float", "int", "bool")


def _numeric_candidates(
    statistic: float, thresholds: np.ndarray, kind: str, bounds: tuple[int, int] | None
) -> list[Any]:
    if kind == "bool":
        return [None, True, False]
    if kind == "int":
        values = {0, 1, -1, 10**9, -(10**9), round(statistic)}
        for t in thresholds:
            values.update({math.floor(t) - 1, math.floor(t), math.ceil(t), math.ceil(t) + 1})
        low, high = bounds or (-(2**63), 2**63 - 1)
        return [None, *sorted(v for v in values if low <= v <= high)]
    floats = {0.0, 1.0, -1.0, 0.5, 1e9, -1e9, statistic}
    for t in thresholds:
        floats.update({float(t), float(np.nextafter(t, -np.inf)), float(np.nextafter(t, np.inf))})
    return [None, *sorted(floats)]


def verification_records(
    compiled: CompiledPipeline,
    kinds: Mapping[str, str] | None = None,
    bounds: Mapping[str, tuple[int, int]] | None = None,
    random_rows: int = 256,
    every_threshold: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Feature rows that exercise the compiled function where it could differ from the pipeline:
    every numeric column missing in turn and all together, values at and one ulp either side of
    every split threshold (``every_threshold``), every known category, an unseen one, the fill value
    and missing categoricals, and ``random_rows`` random mixtures of these. ``kinds``: per numeric
    column, "float" (default), "int" or "bool" values, as a feature schema types them, integers
    within ``bounds`` (the column type's range)."""
    kinds, bounds = kinds or {}, bounds or {}
    rng = np.random.default_rng(seed)
    numeric: dict[str, list[Any]] = {}
    base: dict[str, Any] = {}
    for block in compiled.numeric:
        kept = {int(j): block.start + i for i, j in enumerate(block.kept)}
        for j, name in enumerate(block.columns):
            kind = kinds.get(name, "float")
            statistic = float(block.statistics[j])
            thresholds = compiled.trees.split_thresholds(kept[j]) if j in kept else np.empty(0)
            thresholds = thresholds[np.isfinite(thresholds)]
            numeric[name] = _numeric_candidates(statistic, thresholds, kind, bounds.get(name))
            if kind == "float":
                base[name] = statistic
            elif kind == "bool":
                base[name] = False
            else:  # the representable integer nearest the statistic
                base[name] = min(numeric[name][1:], key=lambda v, s=statistic: abs(v - s))
    categorical: dict[str, list[Any]] = {}
    for block in compiled.categorical:
        for name, fill, positions in zip(block.columns, block.fill_values, block.positions, strict=True):
            categorical[name] = [None, *positions, UNSEEN_CATEGORY, fill, ""]
            base[name] = next(iter(positions), None)
    rows: list[dict[str, Any]] = [dict(base), dict.fromkeys(base)]
    for name, candidates in numeric.items():
        rows += [{**base, name: value} for value in (candidates if every_threshold else candidates[:1])]
    for name, candidates in categorical.items():
        rows += [{**base, name: value} for value in candidates]
    for _ in range(random_rows):
        row = {name: candidates[rng.integers(len(candidates))] for name, candidates in numeric.items()}
        row |= {name: candidates[rng.integers(len(candidates))] for name, candidates in categorical.items()}
        rows.append(row)
    return rows


def verification_frame(compiled: CompiledPipeline, records: Sequence[Record]) -> pd.DataFrame:
    """``records`` as the frame the pipeline is fitted on: float64 numbers, object categories."""
    columns: dict[str, pd.Series] = {}
    for name in compiled.feature_names:
        values = [r.get(name) for r in records]
        if name in compiled.numeric_columns:
            columns[name] = pd.Series([np.nan if v is None else float(v) for v in values], dtype="float64")
        else:
            columns[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def _pipeline_probabilities(pipeline: Any, frame: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    return pipeline.predict_proba(frame[list(names)])[:, 1]


def _differences(expected: np.ndarray, got: np.ndarray | None) -> str | None:
    if got is None:
        return "the compiled function declined the frame"
    if got.shape != expected.shape:
        return f"shape {got.shape}, not {expected.shape}"
    if np.array_equal(got, expected):
        return None
    worst = float(np.nanmax(np.abs(got - expected))) if len(got) else 0.0
    return f"{int(np.sum(got != expected))} of {len(got)} probabilities differ (at most by {worst:.3g})"


@dataclass
class FastPath:
    """How a served model scores: ``compiled`` when it is verified, otherwise None with the reason.

    The scoring methods answer None whenever the compiled function does not (a schema that failed
    its check, dtypes it leaves to the pipeline, any error, such as an infinite value the pipeline
    refuses too): the caller then scores with the pipeline, which gives its own answer or error."""

    compiled: CompiledPipeline | None
    reason: str
    pipeline: Any = field(repr=False, default=None)
    label: str = ""
    _schemas: dict[int, tuple[pa.Schema, bool]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def enabled(self) -> bool:
        return self.compiled is not None

    def score_records(self, records: Sequence[Record], schema: pa.Schema) -> np.ndarray | None:
        """Probabilities of stored rows (as `json.loads` gives them) of a feature schema."""
        if self.compiled is None or not self.accepts(schema):
            return None
        try:
            return self.compiled.predict_records(records)
        except Exception:  # the pipeline answers instead
            return None

    def score_frame(self, frame: pd.DataFrame, schema: pa.Schema | None = None) -> np.ndarray | None:
        """Probabilities of a frame's rows (read with ``schema``, when it was)."""
        if self.compiled is None or (schema is not None and not self.accepts(schema)):
            return None
        try:
            return self.compiled.predict_frame(frame)
        except Exception:  # the pipeline answers instead
            return None

    def accepts(self, schema: pa.Schema) -> bool:
        """Whether rows of this feature schema (stored rows and frames read with it) are scored by
        the compiled function: checked once per schema against the pipeline, on rows typed by it."""
        if self.compiled is None:
            return False
        known = self._schemas.get(id(schema))
        if known is not None and known[0] is schema:
            return known[1]
        with self._lock:
            known = self._schemas.get(id(schema))
            if known is None or known[0] is not schema:
                problem = self.check_schema(schema)
                if problem:
                    log.warning(
                        "%s: rows of feature schema %s are scored by the pipeline, not the fast path: %s",
                        self.label,
                        schema_fingerprint(schema),
                        problem,
                    )
                known = (schema, problem is None)
                self._schemas[id(schema)] = known
        return known[1]

    def check_schema(self, schema: pa.Schema) -> str | None:
        """None if the compiled function scores rows of ``schema`` as the pipeline does (on
        verification rows typed by the schema, stored and read back with `rows_to_frame`), or why not."""
        compiled = self.compiled
        if compiled is None:
            return "no compiled function"
        kinds: dict[str, str] = {}
        bounds: dict[str, tuple[int, int]] = {}
        for name in compiled.feature_names:
            if name not in schema.names:
                return f"the schema has no {name!r}"
            kind = schema.field(name).type
            if name in compiled.numeric_columns:
                if pa.types.is_boolean(kind):
                    kinds[name] = "bool"
                elif pa.types.is_integer(kind):
                    kinds[name] = "int"
                    bits = kind.bit_width
                    signed = pa.types.is_signed_integer(kind)
                    bounds[name] = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
                elif pa.types.is_float64(kind):
                    kinds[name] = "float"
                else:
                    return f"numeric feature {name!r} is {kind} (not an integer, boolean or float64)"
            elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
                return f"categorical feature {name!r} is {kind}, not a string"
        others = [f for f in schema if f.name not in compiled.feature_names]
        if any(not f.nullable for f in others):
            return "the schema has non-nullable columns the check cannot fill"
        try:
            records = verification_records(
                compiled, kinds, bounds, random_rows=64, every_threshold=False, seed=1
            )
            for row in records:
                row.update(dict.fromkeys((f.name for f in others), None))
            # rows_to_frame converts date strings in place: each call gets its own copies.
            expected = _pipeline_probabilities(
                self.pipeline, rows_to_frame([dict(r) for r in records], schema), compiled.feature_names
            )
            frame = rows_to_frame([dict(r) for r in records], schema)
            for path, got in (
                ("stored rows", compiled.predict_records(records)),
                ("frames", compiled.predict_frame(frame)),
            ):
                difference = _differences(expected, got)
                if difference:
                    return f"{path}: {difference}"
        except Exception as exc:  # any failure leaves the schema to the pipeline
            return f"the check failed: {type(exc).__name__}: {exc}"
        return None


def schema_fingerprint(schema: pa.Schema) -> str:
    return hashlib.sha256(schema.serialize().to_pybytes()).hexdigest()[:12]


def prepare_fast_path(pipeline: Any, label: str = "model") -> FastPath:
    """The pipeline compiled and verified against itself (see the module), or the reason it is
    served as it is; logged once, here."""
    try:
        compiled = compile_pipeline(pipeline)
    except UnsupportedPipeline as exc:
        return _fallback(pipeline, label, f"the pipeline is not supported: {exc}")
    except Exception as exc:  # a fast path must never keep a model from being served
        return _fallback(pipeline, label, f"the pipeline cannot be compiled: {type(exc).__name__}: {exc}")
    try:
        records = verification_records(compiled)
        frame = verification_frame(compiled, records)
        expected = _pipeline_probabilities(pipeline, frame, compiled.feature_names)
        difference = _differences(expected, compiled.predict_frame(frame, engine="numpy")) or _differences(
            expected, compiled.predict_records(records, engine="numpy")
        )
        if difference:
            return _fallback(
                pipeline,
                label,
                f"not bit-equal to the pipeline on {len(records)} verification rows: {difference}",
            )
        note = ""
        try:
            large = _differences(expected, compiled.predict_frame(frame, engine="classifier"))
        except Exception as exc:  # only the large-batch engine is lost
            large = f"{type(exc).__name__}: {exc}"
        if large:
            compiled.classifier_for_large_batches = False
            note = f"; large batches also walk the trees in numpy (the classifier's own walk: {large})"
    except Exception as exc:  # a verification that cannot run is a failed one
        return _fallback(pipeline, label, f"the verification failed: {type(exc).__name__}: {exc}")
    reason = f"compiled; bit-equal to the pipeline on {len(records)} verification rows{note}"
    log.info("%s: fast path on (%s)", label, reason)
    return FastPath(compiled, reason, pipeline, label)


def _fallback(pipeline: Any, label: str, reason: str) -> FastPath:
    log.warning("%s: fast path off, scoring with the pipeline: %s", label, reason)
    return FastPath(None, reason, pipeline, label)
