"""The REST transcoder: Azure/OpenAI JSON and SSE in front of the gRPC service.

No business logic lives here: routes (``app.py``), how the service is reached
(``backend.py``) and how errors are rendered (``errors.py``).
"""
