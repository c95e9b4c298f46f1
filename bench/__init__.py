"""Benchmarks: smdebug's rule loop, the evaluator and a no-framework floor on the same trials.

``make bench`` (``python -m bench.run``) runs everything and writes BENCHMARKS.md's table; each
module is also a command of its own (``python -m bench.floor --help``).
"""
