"""The contract of raw/crm_tickets: one row per ticket (its latest version) per day.

The row rules themselves run in crm/tickets.py (``validate_tickets``) on the exported JSON, before
a table exists; this declaration is what the UI shows and what the table-level check verifies.
"""

from churn_platform.contracts.declare import Column, Contract, Rule

CRM_TICKETS = Contract(
    asset="raw/crm_tickets",
    keys=("ticket_id",),
    columns=(
        Column("ticket_id", "int64", "the Zendesk ticket id", nullable=False, unique=True),
        Column("customer_id", "int64", "the requester: the customer the ticket is about", nullable=False),
        Column("subject", "string", "the ticket's subject"),
        Column("description", "string", "the first comment (sentiment reads its first 10,000 characters)"),
        Column("status", "string", "new, open, pending, hold, solved, closed or deleted", nullable=False),
        Column("priority", "string", "low, normal, high, urgent or null"),
        Column("type", "string", "question, incident, problem, task or null"),
        Column("tags", "string", "the ticket's tags, as a JSON array"),
        Column("satisfaction", "string", "good, bad, offered or null"),
        Column("created_at", "timestamp[us, UTC]", "when the ticket was opened", nullable=False),
        Column(
            "updated_at",
            "timestamp[us, UTC]",
            "its latest change (no zone in the export means UTC)",
            nullable=False,
        ),
        Column("updated_date", "date", "the UTC day of updated_at: the partition", nullable=False),
    ),
    rules=(
        Rule(
            "missing",
            "ticket_id",
            "id, subject, status, requester_id, created_at, updated_at present and not null",
        ),
        Rule("not_an_id", "customer_id", 'requester_id a positive whole number (12.7 or "12.7" is refused)'),
        Rule("not_a_time", "updated_at", "created_at / updated_at ISO 8601 times"),
        Rule("in_the_future", "updated_at", "not more than CHURN_CRM_CLOCK_SKEW_SECONDS ahead"),
        Rule("not_text", "subject", "subject, status, description, priority, type strings"),
        Rule("not_a_tag_list", "tags", "null or a list of strings"),
        Rule(
            "platform_ticket", "tags", "tickets the platform opened (tag churn_platform_alert) are left out"
        ),
    ),
)
