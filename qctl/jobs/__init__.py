"""Jobs: long message moves that can be watched, interrupted and resumed.

DLQ redrive, drain and purge and event replay all run as jobs: each has an id, a state
file and an append-only ledger in the state directory (``model``, ``store``), shows
progress on a terminal (``progress``), stops cleanly on Ctrl-C or SIGTERM
(``interrupt``) and continues with ``--resume JOB``. Messages move through one of two
engines: the at-least-once ``mover`` (any source to any produce target, acknowledging
the source only after the target confirmed) or a backend's exactly-once transactional
copy (Kafka to Kafka).
"""
