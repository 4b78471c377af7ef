"""Provider-shaped invocation payloads built from nubes objects, for tests and local emulation."""
