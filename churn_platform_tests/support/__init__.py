"""Test support that tests and bench/ import: real servers on loopback (``servers``), a real
`dagster dev` deployment (``stack``) and data factories (``data``)."""
