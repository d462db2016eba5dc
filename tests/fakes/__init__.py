"""Fakes the test-suite runs instead of real providers.

``tests.fakes.upstream`` holds ``FakeUpstream``, a real HTTP server speaking the Azure OpenAI and
OpenAI chat-completions wire formats. Import from that module directly; this package does not
re-export it so that ``python -m tests.fakes.upstream`` runs without a double-import warning.
"""
