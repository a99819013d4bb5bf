"""The real-time scoring service (`churn-platform serve`): the champion model behind a REST API,
fed by the online feature store, following the `champion` alias without restarts.

May import: settings, storage, orchestration, online (the store's reads) and ml (the batch path's
predict function, so the two paths cannot disagree).
"""
