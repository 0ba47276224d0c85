"""Consumer lag for Kafka groups and RabbitMQ queues, and whether consumers keep up.

``model`` holds the result types (stable JSON field names, see docs/lag.md),
``kafka`` and ``queues`` turn what backends report into them, ``status`` evaluates
recorded histories the way Burrow does, ``history`` keeps those histories between
samples, ``collect`` takes snapshots across backends, and ``prometheus`` renders them
in the text exposition format. Nothing here imports a client library.
"""
