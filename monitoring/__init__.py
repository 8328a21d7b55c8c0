"""Metrics, health and progress of a running dataflow (`/metrics`, `/health`, progress bar)."""
