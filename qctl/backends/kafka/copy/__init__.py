"""Exactly-once copies between Kafka topics: the capability (``transactional``), its two
engines (``wire_engine`` over qctl's protocol client, ``library_engine`` over
librdkafka), what they share (``common``), and the wire engine's record batches
(``batches``) and worker processes (``workers``)."""
