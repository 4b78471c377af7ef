"""Packaging and deployment per cloud (plan, then apply). Not built yet: no issue has asked for it."""
