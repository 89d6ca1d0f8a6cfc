"""Integrations with web frameworks: ``contrib.django`` and ``contrib.flask``."""
