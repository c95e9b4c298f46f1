"""Development tools: trial writers for tests, the demo and the benchmarks (not shipped)."""
