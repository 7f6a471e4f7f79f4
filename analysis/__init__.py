"""Measurement and analysis: metrics, benchmarks, result collection, tables and plots."""
