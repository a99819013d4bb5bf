"""The Dagster UI in a real browser: the driver (``dagster_ui``: an isolated platform, `dagster dev`,
headless Chromium through Playwright), the end-to-end browser test and `make screenshots`."""
