"""The scoring service's HTTP API (FastAPI): scores from the champion and the online features.

Why FastAPI on uvicorn rather than MLServer or `mlflow models serve`: a score here is a lookup
(Redis) plus one `predict_proba` of the pipeline the batch path uses (`ml.scoring.predict_with`),
or of its compiled copy, verified bit for bit against it when the model is loaded
(serving/fast_path.py: the same probabilities without pandas and scikit-learn's per-call overhead),
and the service must follow the `champion` alias, check API keys, refuse stale features and say
which model version and features date produced every score. Those are a few lines around FastAPI;
model servers take feature rows only and serve one fixed model URI.

Every score carries the model version (and SHA-256) and the features' as-of date that produced it.
"""

import datetime as dt
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import pandas as pd
import pyarrow as pa
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
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

from churn_platform.crm.resources import CRMResource
from churn_platform.crm.sentiment import ticket_sentiment
from churn_platform.crm.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookRejected, verify
from churn_platform.crm.zendesk_api import CRMAPIError, CRMRequestRefused
from churn_platform.inference.log import InferenceLog
from churn_platform.ml.scoring import predict_with
from churn_platform.online.store import OnlineFeaturesMissing, read_current_raw, rows_to_frame
from churn_platform.serving.champion import ChampionFollower, ServingModel
from churn_platform.serving.webhooks import (
    FINAL_REFUSALS,
    MAX_BODY_BYTES,
    RETRY_AFTER,
    SCORED_EVENTS,
    EventLedger,
    MalformedEvent,
    fold_in_ticket,
    parse_ticket_event,
    risk_tag,
    write_back_fields,
)

log = logging.getLogger(__name__)

MAX_BATCH = 1_000
MAX_CALLER_CHARS = 64


@dataclass(frozen=True)
class CRMLoop:
    """What the webhook endpoint needs: the CRM to write to, the webhook's signing secret and how
    the risk is shown (settings/crm.py)."""

    crm: CRMResource
    secret: str
    risk_field_id: int | None
    medium_percent: int
    high_percent: int
    tolerance_seconds: int


class ScoreMemo:
    """Scores of stored feature rows, keyed by the model's SHA-256, the rows' schema and the row as
    stored: a score is a pure function of these, so a customer is re-scored only when their
    features or the model change (a re-loaded version with other values is other keys). Bounded:
    emptied when full; 0 entries: nothing is kept."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._scores: dict[tuple[str, int, bytes], float] = {}

    def get(self, key: tuple[str, int, bytes]) -> float | None:
        return self._scores.get(key)

    def put(self, key: tuple[str, int, bytes], score: float) -> None:
        if not self.max_entries:
            return
        if len(self._scores) >= self.max_entries:
            self._scores = {}
        self._scores[key] = score


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


class ModelInfo(BaseModel):
    model_version: str
    model_sha256: str
    features: list[str]
    fast_path: bool  # scores come from the pipeline's compiled, verified copy
    fast_path_reason: str  # why (not)


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
    inference_log: InferenceLog | None = None,
    crm_loop: CRMLoop | None = None,
    score_cache_entries: int = 0,
    today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
) -> FastAPI:
    app = FastAPI(title="churn_platform scoring", version="1")
    metrics = Metrics()
    memo = ScoreMemo(score_cache_entries)
    ledger = EventLedger(redis_client, prefix)

    def check_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if x_api_key is None or not hmac.compare_digest(x_api_key.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key")

    def serving_model() -> ServingModel:
        if follower.model is None:
            raise HTTPException(503, "no model loaded yet")
        return follower.model

    def online(customer_ids: list[int]) -> tuple[str, pa.Schema, list[bytes | None]]:
        """The current features version, its schema and these customers' stored rows (None for an
        unknown id); 503 when the store is unreachable or empty, 409 when its features are too old."""
        try:
            as_of, schema, values = read_current_raw(redis_client, prefix, customer_ids)
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
        return as_of, schema, values

    def score(model: ServingModel, frame: pd.DataFrame, schema: pa.Schema) -> list[float]:
        """Scores of a frame read with ``schema``: from the fast path when it takes the frame,
        otherwise from the pipeline."""
        fast = model.fast
        try:
            probabilities = predict_with(
                model.pipeline,
                frame,
                fast=(lambda f: fast.score_frame(f, schema)) if fast is not None else None,
            )
        except ValueError as exc:  # e.g. a posted row without a feature the model needs
            raise HTTPException(422, str(exc)) from None
        return probabilities.tolist()

    def score_stored(model: ServingModel, schema: pa.Schema, values: list[bytes]) -> list[float]:
        """Scores of stored rows, computing only those the memo does not hold: straight from the
        stored JSON on the fast path, through the batch path's frame otherwise."""
        keys = [(model.sha256, id(schema), value) for value in values]
        scores = [memo.get(key) for key in keys]
        todo = [i for i, known in enumerate(scores) if known is None]
        if todo:
            rows = [json.loads(values[i]) for i in todo]
            computed = model.fast.score_records(rows, schema) if model.fast is not None else None
            probabilities = (
                computed.tolist()
                if computed is not None
                else score(model, rows_to_frame(rows, schema), schema)
            )
            for i, probability in zip(todo, probabilities, strict=True):
                memo.put(keys[i], probability)
                scores[i] = probability
        return scores  # type: ignore[return-value]

    def logged(
        started: float,
        endpoint: str,
        caller: str | None,
        model: ServingModel,
        as_of: str | None,
        scored: list[tuple[int | None, float]],
        request_id: str,
    ) -> None:
        """Every prediction into the inference log (request id, customer, model, features date,
        probability, latency, caller)."""
        metrics.scores.inc(len(scored))
        if inference_log is None:
            return
        inference_log.record(
            customer_ids=[customer for customer, _ in scored],
            churn_probabilities=[probability for _, probability in scored],
            request_id=request_id,
            model_version=model.version,
            model_sha256=model.sha256,
            features_as_of=as_of,
            latency_ms=round(1000 * (time.perf_counter() - started), 3),
            endpoint=endpoint,
            caller=(caller or "api")[:MAX_CALLER_CHARS],
        )

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
            "inference_log_failing": inference_log is not None and inference_log.last_error is not None,
            "crm_webhooks": crm_loop is not None,
            "fast_path": model.fast_path if model else None,
        }
        try:
            body["features_as_of"], *_ = online([])
        except HTTPException as exc:
            return JSONResponse({**body, "ready": False, "detail": exc.detail}, status_code=503)
        if model is None:
            return JSONResponse({**body, "ready": False, "detail": "no model loaded"}, status_code=503)
        return JSONResponse({**body, "ready": True})

    @app.get("/v1/model", dependencies=[Depends(check_key)])
    def model_info() -> ModelInfo:
        """The model being served and how: whether its compiled fast path scores, and why (not)."""
        model = serving_model()
        return ModelInfo(
            model_version=model.version,
            model_sha256=model.sha256,
            features=[str(name) for name in model.pipeline.feature_names_in_],
            fast_path=model.fast_path,
            fast_path_reason=model.fast_path_reason,
        )

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        model = follower.model
        if model is not None:
            metrics.model.clear()
            metrics.model.labels(model.version, model.sha256).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/customers/{customer_id}/churn-score", dependencies=[Depends(check_key)])
    def customer_score(customer_id: int, x_caller: Annotated[str | None, Header()] = None) -> ScoreResponse:
        """One customer's churn probability from their online features."""
        started = time.perf_counter()
        model = serving_model()
        as_of, schema, [value] = online([customer_id])
        if value is None:
            raise HTTPException(404, f"customer {customer_id} has no features as of {as_of}")
        [probability] = score_stored(model, schema, [value])
        request_id = uuid.uuid4().hex
        logged(started, "customer", x_caller, model, as_of, [(customer_id, probability)], request_id)
        return ScoreResponse(
            customer_id=customer_id,
            churn_probability=probability,
            model_version=model.version,
            model_sha256=model.sha256,
            features_as_of=as_of,
            request_id=request_id,
        )

    @app.post("/v1/churn-scores", dependencies=[Depends(check_key)])
    def batch_scores(body: BatchRequest, x_caller: Annotated[str | None, Header()] = None) -> BatchResponse:
        """Several customers at once (up to 1,000); all known, or a 404 naming the unknown ones."""
        started = time.perf_counter()
        model = serving_model()
        as_of, schema, values = online(body.customer_ids)
        missing = [c for c, v in zip(body.customer_ids, values, strict=True) if v is None]
        if missing:
            raise HTTPException(404, f"customers without features as of {as_of}: {missing[:20]}")
        probabilities = score_stored(model, schema, values)
        request_id = uuid.uuid4().hex
        scored = list(zip(body.customer_ids, probabilities, strict=True))
        logged(started, "batch", x_caller, model, as_of, scored, request_id)
        return BatchResponse(
            scores=[
                ScoreResponse(
                    customer_id=customer,
                    churn_probability=p,
                    model_version=model.version,
                    model_sha256=model.sha256,
                    features_as_of=as_of,
                    request_id=request_id,
                )
                for customer, p in scored
            ],
            model_version=model.version,
            features_as_of=as_of,
            request_id=request_id,
        )

    @app.post("/v1/churn-scores/features", dependencies=[Depends(check_key)])
    def features_score(
        body: FeaturesRequest, x_caller: Annotated[str | None, Header()] = None
    ) -> ScoreResponse:
        """A posted feature row (e.g. a what-if), typed by the current online features' schema."""
        started = time.perf_counter()
        model = serving_model()
        _, schema, _ = online([])
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
        [probability] = score(model, frame, schema)
        customer = body.features.get("customer_id")
        customer = int(customer) if isinstance(customer, int) else None
        request_id = uuid.uuid4().hex
        logged(started, "features", x_caller, model, None, [(customer, probability)], request_id)
        return ScoreResponse(
            customer_id=customer,
            churn_probability=probability,
            model_version=model.version,
            model_sha256=model.sha256,
            features_as_of=None,
            request_id=request_id,
        )

    @app.post("/v1/webhooks/zendesk")
    async def zendesk_webhook(request: Request) -> JSONResponse:
        """A Zendesk ticket event (signed by Zendesk, no API key): the requester is scored and the
        risk written back onto the ticket (serving/webhooks.py says which events and how)."""
        if crm_loop is None:
            raise HTTPException(503, "CRM webhooks are not configured (CHURN_CRM_WEBHOOK_SECRET is unset)")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise HTTPException(413, f"a webhook body is at most {MAX_BODY_BYTES} bytes")
        body = await request.body()  # the exact bytes Zendesk signed
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"a webhook body is at most {MAX_BODY_BYTES} bytes")
        try:
            verify(
                crm_loop.secret,
                request.headers.get(TIMESTAMP_HEADER),
                body,
                request.headers.get(SIGNATURE_HEADER),
                tolerance_seconds=crm_loop.tolerance_seconds,
            )
            event = parse_ticket_event(body)
        except WebhookRejected as exc:
            raise HTTPException(401, f"webhook refused: {exc}") from None
        except MalformedEvent as exc:
            raise HTTPException(422, f"webhook body refused: {exc}") from None
        if event.type not in SCORED_EVENTS:
            return JSONResponse({"status": "ignored", "reason": f"{event.type} is not scored"})
        if event.opened_by_platform:
            return JSONResponse({"status": "ignored", "reason": "an alert ticket the platform opened"})
        if event.requester_id is None:
            return JSONResponse({"status": "ignored", "reason": "the ticket has no customer requester"})
        # Redis, the model and the CRM are blocking calls: off the event loop.
        return await run_in_threadpool(handle_ticket_event, event)

    def retry_later(detail: str) -> JSONResponse:
        return JSONResponse({"status": "failed", "detail": detail}, status_code=503, headers=RETRY_AFTER)

    def handle_ticket_event(event) -> JSONResponse:
        try:
            claim, earlier = ledger.claim(event.event_id)
        except RedisError as exc:
            return retry_later(f"the event ledger is unreachable ({type(exc).__name__})")
        if claim is None:
            if earlier.get("status") == "processing":
                return JSONResponse({"status": "processing"}, status_code=409)  # Zendesk retries 409
            return JSONResponse({**earlier, "redelivery": True})
        outcome, response = None, None
        try:
            outcome = score_ticket(event)
        except HTTPException as exc:  # no model or features yet, the store unreachable, stale features
            response = (
                retry_later(str(exc.detail))
                if exc.status_code == 503
                else JSONResponse({"status": "failed", "detail": exc.detail}, status_code=exc.status_code)
            )
        except CRMRequestRefused as exc:
            if exc.status in FINAL_REFUSALS:
                outcome = {"status": "refused", "ticket_id": event.ticket_id, "detail": str(exc)[:300]}
                response = JSONResponse(outcome, status_code=424)
                log.warning("ticket %s: the CRM refused the risk update: %s", event.ticket_id, exc)
            else:  # credentials, a redirect, a foreign link: a configuration to fix, then redeliver
                log.warning("ticket %s: risk not written back: %s", event.ticket_id, exc)
                response = retry_later("the CRM refused the service's request; see the service's log")
        except CRMAPIError as exc:  # the write-back failed for now: the redelivery tries again
            log.warning("ticket %s: risk not written back: %s", event.ticket_id, exc)
            response = retry_later("the CRM did not take the update")
        try:
            if outcome is not None:
                ledger.complete(event.event_id, claim, outcome)
            else:
                ledger.release(event.event_id, claim)
        except RedisError:  # the claim expires on its own; the answer below still holds
            log.warning("event %s: its outcome could not be recorded in Redis", event.event_id)
        return response or JSONResponse(outcome)

    def score_ticket(event) -> dict[str, Any]:
        started = time.perf_counter()
        model = serving_model()
        as_of, schema, [value] = online([event.requester_id])
        if value is None:
            return {
                "status": "ignored",
                "reason": f"customer {event.requester_id} has no features as of {as_of}",
            }
        row = json.loads(value)
        # A ticket created after the features' day is not in them yet: count it now.
        newer = event.created_at.astimezone(dt.UTC).date() > dt.date.fromisoformat(as_of)
        if newer:
            row = fold_in_ticket(row, ticket_sentiment(event.subject, event.description))
        [probability] = score(model, rows_to_frame([row], schema), schema)
        tag = risk_tag(probability, crm_loop.medium_percent, crm_loop.high_percent)
        with crm_loop.crm.api() as api:
            api.update_ticket(event.ticket_id, write_back_fields(probability, tag, crm_loop.risk_field_id))
        request_id = uuid.uuid4().hex
        logged(
            started,
            "zendesk_webhook",
            "zendesk-webhook",
            model,
            as_of,
            [(event.requester_id, probability)],
            request_id,
        )
        return {
            "status": "scored",
            "ticket_id": event.ticket_id,
            "customer_id": event.requester_id,
            "churn_probability": probability,
            "risk": tag,
            "ticket_folded_in": newer,
            "model_version": model.version,
            "features_as_of": as_of,
            "request_id": request_id,
        }

    return app
