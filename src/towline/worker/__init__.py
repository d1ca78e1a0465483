"""Process wiring: the Temporal client, the worker, the local dev server."""
