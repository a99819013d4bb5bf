"""The scoring service's HTTP API (FastAPI): scores from the champion and the online features.

Why FastAPI on uvicorn rather than MLServer or `mlflow models serve`: a score here is a lookup
(Redis) plus one `predict_proba` of the pipeline the batch path uses (`ml.scoring.predict_with`),
and the service must follow the `champion` alias, check API keys, refuse stale features and say
which model version and features date produced every score. Those are a few lines around FastAPI;
model servers take feature rows only and serve one fixed model URI.

Every score carries the model version (and SHA-256) and the features' as-of date that produced it.
"""

import datetime as dt
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import pandas as pd
import pyarrow as pa
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from churn_platform.ml.scoring import predict_with
from churn_platform.online.store import OnlineFeaturesMissing, read_current_rows, rows_to_frame
from churn_platform.serving.champion import ChampionFollower, ServingModel

MAX_BATCH = 1_000


class ScoreResponse(BaseModel):
    customer_id: int | None
    churn_probability: float
    model_version: str
    model_sha256: str
    features_as_of: str | None  # None for a score of posted features
    request_id: str


class BatchRequest(BaseModel):
    customer_ids: list[int] = Field(min_length=1, max_length=MAX_BATCH)


class BatchResponse(BaseModel):
    scores: list[ScoreResponse]
    model_version: str
    features_as_of: str
    request_id: str


class FeaturesRequest(BaseModel):
    features: dict[str, float | int | str | bool | None] = Field(min_length=1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "churn_serving_request_duration_seconds",
            "Time to answer a request, by endpoint",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.requests = Counter(
            "churn_serving_requests_total",
            "Requests by endpoint and status code",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.scores = Counter("churn_serving_scores_total", "Customers scored", registry=self.registry)
        self.model = Gauge(
            "churn_serving_model_info",
            "The model version being served (value 1)",
            ["version", "sha256"],
            registry=self.registry,
        )
        self.features_age = Gauge(
            "churn_serving_features_age_days", "Age of the online features last read", registry=self.registry
        )


def build_app(
    follower: ChampionFollower,
    redis_client: Any,
    prefix: str,
    api_key: str,
    max_feature_age_days: int,
    today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
) -> FastAPI:
    app = FastAPI(title="churn_platform scoring", version="1")
    metrics = Metrics()

    def check_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key")

    def serving_model() -> ServingModel:
        if follower.model is None:
            raise HTTPException(503, "no model loaded yet")
        return follower.model

    def online(customer_ids: list[int]) -> tuple[str, pa.Schema, pd.DataFrame, list[int]]:
        """The current features version, its schema, these customers' rows and the unknown ids;
        503 when the store is unreachable or empty, 409 when its features are too old."""
        try:
            as_of, schema, frame, missing = read_current_rows(redis_client, prefix, customer_ids)
        except OnlineFeaturesMissing as exc:
            raise HTTPException(503, str(exc)) from None
        except RedisError as exc:
            raise HTTPException(
                503, f"the online feature store is unreachable ({type(exc).__name__})"
            ) from None
        age = (today() - dt.date.fromisoformat(as_of)).days
        metrics.features_age.set(age)
        if age > max_feature_age_days:
            raise HTTPException(
                409,
                f"the online features are as of {as_of}, {age} days old (CHURN_SERVING_MAX_FEATURE_AGE_DAYS="
                f"{max_feature_age_days}): online/customer_features is not being refreshed; no score is given",
            )
        return as_of, schema, frame, missing

    def score(model: ServingModel, frame: pd.DataFrame) -> list[float]:
        try:
            return [float(p) for p in predict_with(model.pipeline, frame)]
        except ValueError as exc:  # e.g. a posted row without a feature the model needs
            raise HTTPException(422, str(exc)) from None

    @app.middleware("http")
    async def measure(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        # The route's template (/v1/customers/{customer_id}/...), not the path: bounded label values.
        endpoint = getattr(request.scope.get("route"), "path", "unmatched")
        metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        metrics.requests.labels(endpoint, str(response.status_code)).inc()
        return response

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> JSONResponse:
        """Readiness: a model is loaded and online features exist (and are fresh enough)."""
        model = follower.model
        body: dict[str, Any] = {
            "model_version": model.version if model else None,
            "model_sha256": model.sha256 if model else None,
            # Unauthenticated: say that refreshing fails, not the error's text.
            "champion_refresh_failing": follower.last_error is not None,
        }
        try:
            body["features_as_of"], *_ = online([])
        except HTTPException as exc:
            return JSONResponse({**body, "ready": False, "detail": exc.detail}, status_code=503)
        if model is None:
            return JSONResponse({**body, "ready": False, "detail": "no model loaded"}, status_code=503)
        return JSONResponse({**body, "ready": True})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        model = follower.model
        if model is not None:
            metrics.model.clear()
            metrics.model.labels(model.version, model.sha256).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/customers/{customer_id}/churn-score", dependencies=[Depends(check_key)])
    def customer_score(customer_id: int) -> ScoreResponse:
        """One customer's churn probability from their online features."""
        model = serving_model()
        as_of, _, frame, missing = online([customer_id])
        if missing:
            raise HTTPException(404, f"customer {customer_id} has no features as of {as_of}")
        [probability] = score(model, frame)
        metrics.scores.inc()
        return ScoreResponse(
            customer_id=customer_id,
            churn_probability=probability,
            model_version=model.version,
            model_sha256=model.sha256,
            features_as_of=as_of,
            request_id=uuid.uuid4().hex,
        )

    @app.post("/v1/churn-scores", dependencies=[Depends(check_key)])
    def batch_scores(body: BatchRequest) -> BatchResponse:
        """Several customers at once (up to 1,000); all known, or a 404 naming the unknown ones."""
        model = serving_model()
        as_of, _, frame, missing = online(body.customer_ids)
        if missing:
            raise HTTPException(404, f"customers without features as of {as_of}: {missing[:20]}")
        probabilities = score(model, frame)
        metrics.scores.inc(len(probabilities))
        request_id = uuid.uuid4().hex
        return BatchResponse(
            scores=[
                ScoreResponse(
                    customer_id=int(customer),
                    churn_probability=p,
                    model_version=model.version,
                    model_sha256=model.sha256,
                    features_as_of=as_of,
                    request_id=request_id,
                )
                for customer, p in zip(frame["customer_id"], probabilities, strict=True)
            ],
            model_version=model.version,
            features_as_of=as_of,
            request_id=request_id,
        )

    @app.post("/v1/churn-scores/features", dependencies=[Depends(check_key)])
    def features_score(body: FeaturesRequest) -> ScoreResponse:
        """A posted feature row (e.g. a what-if), typed by the current online features' schema."""
        model = serving_model()
        _, schema, _, _ = online([])
        unknown = sorted(set(body.features) - set(schema.names))
        if unknown:
            raise HTTPException(422, f"unknown feature(s) {unknown}; the features are {schema.names}")
        # Every feature the model uses must be posted (null is a value; absent is a mistake).
        missing = [name for name in model.pipeline.feature_names_in_ if name not in body.features]
        if missing:
            raise HTTPException(422, f"feature(s) missing: {missing}")
        row = {name: body.features.get(name) for name in schema.names}
        try:
            frame = rows_to_frame([row], schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
            raise HTTPException(422, f"the posted features do not fit the feature schema: {exc}") from None
        [probability] = score(model, frame)
        metrics.scores.inc()
        customer = body.features.get("customer_id")
        return ScoreResponse(
            customer_id=int(customer) if isinstance(customer, int) else None,
            churn_probability=probability,
            model_version=model.version,
            model_sha256=model.sha256,
            features_as_of=None,
            request_id=uuid.uuid4().hex,
        )

    return app
