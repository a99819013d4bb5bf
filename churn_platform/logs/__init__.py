"""Product interaction logs: the landing zone and the raw/interaction_logs asset."""
