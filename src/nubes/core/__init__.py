"""The cloud-neutral HTTP kernel: app, routing, binding, Request/Response, Context, encoding, hooks, logs.

OpenAPI and the extension mechanism live here too. Imports no feature package and no cloud SDK; heavy
libraries load on first use.
"""
