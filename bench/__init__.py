"""Benchmarks for Switchyard (not tests: nothing here asserts on timing). See bench/README.md."""
