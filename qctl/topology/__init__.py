"""Topology as code: one YAML file for Kafka topics and RabbitMQ exchanges, queues,
bindings and policies; validated offline, planned against the live cluster with a
three-way (desired / live / broker default) diff, applied with verification.

The engine talks to clusters only through ``qctl.backends.capabilities.topology``.
"""
