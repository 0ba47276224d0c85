"""qctl's own AMQP 0-9-1 client layer for RabbitMQ.

* ``frames``: frames as bytes, found in a receive buffer, checked and written;
* ``connection``: a blocking connection on a socket of qctl's own (handshake, send,
  receive buffer, flow control);
* ``confirms``: publisher confirms and ``mandatory`` returns correlated exactly, for
  any transport;
* ``publisher``: confirm-mode publishing of many messages over pika's asynchronous
  connection.

``wiremove`` (a queue move) runs on ``connection`` and ``frames``; ``publisher`` (produce,
the generic mover's lanes, replay) on pika; both settle their publishes with
``confirms``.
"""
