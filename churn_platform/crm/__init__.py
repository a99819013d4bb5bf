"""The CRM (Zendesk-style support API): raw tickets and their sentiment."""
