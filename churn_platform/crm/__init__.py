"""The ``crm`` stage: raw/crm_tickets and enriched/ticket_sentiment (``assets.py``), ticket
normalisation (``tickets.py``) and sentiment (``sentiment.py``), the Zendesk API client
(``zendesk_api.py``, ``resources.py``), the bundled simulator (``simulator.py``) and the resource
that runs it locally (``simulated.py``).

May import: orchestration, settings, storage. No other stage.
"""
