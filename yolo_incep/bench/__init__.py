"""Benchmarks and the small-object benchmark's machinery, apart from the product."""
