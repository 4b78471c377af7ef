"""Thin translations between each provider's invocation contract and the core Request/Response.

One package per cloud (``aws``, ``gcp``, ``azure``), ``local`` (the dev server) and ``emulator``.
"""
