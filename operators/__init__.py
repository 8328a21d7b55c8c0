"""Reusable, I/O-free Bytewax operators: event-time batches, windows and joins."""
