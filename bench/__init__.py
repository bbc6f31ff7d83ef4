"""Benchmarks and the reliability campaign, run from the checkout as modules:
`/usr/bin/python3 -m bench.<name>` (they import rigs/ from there)."""
