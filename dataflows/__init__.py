"""The Bytewax dataflows; run them with `python -m bytewax.run dataflows.<name>:flow`."""
