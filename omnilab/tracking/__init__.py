"""The tracking store: runs, params, metrics and artifacts in PostgreSQL."""
