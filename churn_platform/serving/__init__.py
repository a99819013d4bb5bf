"""The real-time scoring service (`churn-platform serve`): the champion model behind a REST API,
fed by the online feature store, following the `champion` alias without restarts.

May import: settings, storage, orchestration, online (the store's reads), ml (the batch path's
predict function, so the two paths cannot disagree), crm (the Zendesk client, webhook signatures and
ticket sentiment, for the webhook loop) and inference (the inference log's writer).
"""
