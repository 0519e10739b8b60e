"""chatstack's MCP client: one long-lived session per configured server (session.py), its tools as
chatstack tools (adapter.py) with their results made safe for the model (results.py) under unique,
valid names (names.py), gathered with the built-ins in a live catalog (catalog.py)."""
