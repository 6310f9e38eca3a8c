"""Typed payloads of the events and messages each service publishes (the contract, in code)."""
