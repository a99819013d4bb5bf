"""Failure alerts: a run-failure sensor that posts to Slack and opens a CRM ticket."""
