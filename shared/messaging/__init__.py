"""Reliable messaging: outbox relay, idempotent consumers, RabbitMQ and its in-process twin."""
