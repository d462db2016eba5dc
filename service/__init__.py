"""The gRPC chat service: everything real happens here.

``server.py`` runs it; ``servicer.py`` is the gRPC edge; ``engine.py`` serves one
request using ``routing``, ``resilience`` and ``providers``. Both REST (through
the gateway) and gRPC callers reach the same ``ChatEngine``.
"""
