"""GENERATED CODE: do not edit by hand.

Everything in this package is produced by ``python -m switchyard.protogen`` from
``protos/switchyard/v1/*.proto``; ``tests/test_protogen.py`` fails when it is stale.
"""
