"""Consumer-group offsets you can review, verify and undo.

The engine behind ``qctl offsets``: it turns a strategy (``--to-datetime``, ``--shift-by``,
a CSV file, another group, a snapshot...) into a plan of per-partition changes, computed
exactly as Kafka's own ``kafka-consumer-groups --reset-offsets`` does, with out-of-range
offsets clamped and what each change means in messages and in time. Executing a plan
saves an undo snapshot first, refuses groups with live members, and re-reads the
committed offsets afterwards so a partition that did not take is reported, never hidden.

It talks to clusters only through the ``consumer-groups`` and ``offset-admin``
capabilities, so any backend that implements both gets the whole feature.
"""
