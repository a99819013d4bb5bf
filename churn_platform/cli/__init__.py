"""The `churn-platform` command line: ``main`` (the click group and its commands) and ``demo``
(what `churn-platform demo` runs). Commands read the settings once and build what they need.

May import: everything in the package (it sits on top, beside definitions.py).
"""
