"""The ``switchyard`` command: the top floor, which may import every other.

- ``main.py``: argument parsing for ``serve | service | gateway | keys | token``.
- ``runner.py``: the async entry points that start (and stop) the gateway and the service.
- ``admin.py``: ``keys`` and ``token``, clients of the running service's Admin API.

``python -m cli`` runs it as the console script ``switchyard`` does. Nothing below imports
this package: ``switchyard/`` (shared), ``service/`` and ``gateway/`` stand on their own.
"""
