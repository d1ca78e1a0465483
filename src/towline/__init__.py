"""towline: a durable orchestrator for long-running automation runs, built on Temporal."""

__version__ = "0.1.0"
