"""Deterministic code only: plan models, scheduling, and the Run and Workstream workflows."""
