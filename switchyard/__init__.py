"""Switchyard: an AI gateway speaking the Azure OpenAI chat-completions API.

This package holds what the gateway and the service share: the generated protos
(``switchyard.v1``, do not edit), the JSON <-> proto ``codec``, the ``config``
loader, the error body's trip through gRPC (``errors``) and request ids. The
service lives in ``service/``, the REST transcoder in ``gateway/``, and the
``switchyard`` command, which imports them all, in ``cli/``.
"""
