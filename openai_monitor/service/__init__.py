"""Orchestration between the store, sources, pricing and the ML core (ingest, train, detect, alerts)."""
