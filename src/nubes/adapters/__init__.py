"""Thin translations between each provider's invocation contract and the core Request/Response: ``aws``, ``gcp``, ``azure``, ``local`` (the dev server) and ``emulator``."""
