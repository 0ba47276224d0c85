"""qctl's own Kafka protocol client.

qctl speaks Kafka's protocol itself where librdkafka cannot do a job, does it slowly, or
can crash the process doing it. A protocol client is held to a protocol client's
standard: it connects exactly as librdkafka would with the context's properties or
leaves the command to librdkafka (``config``), and every error branch is driven by a
test through a fault-injecting proxy.

The layer, from the bottom up:

* ``codec``: headers, strings, arrays, varints, error names;
* ``config``: the connection contract, every librdkafka property that affects connecting
  mapped as librdkafka reads it, or a hand-over to librdkafka (docs/security.md);
* ``auth``: SASL PLAIN and SCRAM;
* ``connection``: one bounded connection to one broker (ApiVersions first, then SASL,
  renewed as KIP-368 asks; the context's client id on every request);
* request codecs: ``admin`` (ApiVersions, DescribeQuorum, FindCoordinator, OffsetDelete,
  OffsetFetch, ListOffsets), ``groups``, ``fetch``, ``txn`` (the transactional producer);
* the readers built on them: ``coordinators`` (retries at group coordinators),
  ``committed``, ``group_reads``, ``end_offsets``, ``timestamps``.

The exactly-once copy that writes with ``txn`` lives in ``qctl.backends.kafka.copy``.
"""
