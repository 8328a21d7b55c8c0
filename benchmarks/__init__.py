"""Benchmarks, each against a named baseline in the same run (`just bench`), and the soak."""
