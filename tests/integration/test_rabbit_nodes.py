"""A broker address list whose first node is dead: connections, publishers and consumers go to
the node that answers (on the machine's broker, a vhost of the test's own)."""

from __future__ import annotations

import pika

from shared.messaging.base import OutgoingMessage
from shared.messaging.rabbit import RabbitBus
from tests.doubles import refusing_port


def test_connections_and_publishes_go_to_the_node_that_answers(fresh_vhost: str):
    with refusing_port() as dead:
        dead_url = f"amqp://guest:guest@127.0.0.1:{dead}/"
        bus = RabbitBus(f"{dead_url},{fresh_vhost}")
        for _ in range(3):  # whichever node the process starts at
            bus.nodes.answered(dead_url)
            conn = bus.connect("test")
            conn.close()
            assert bus.nodes.in_order()[0] == fresh_vhost
        bus.check()
        with pika.BlockingConnection(pika.URLParameters(fresh_vhost)) as conn:
            conn.channel().queue_declare("nodes-test", durable=True)
        publisher = bus.publisher()
        try:
            bus.nodes.answered(dead_url)
            publisher.publish_batch([OutgoingMessage(exchange="", routing_key="nodes-test",
                                                     body=b"{}", message_id="m1")])
        finally:
            publisher.close()
        assert bus.nodes.in_order()[0] == fresh_vhost
        with pika.BlockingConnection(pika.URLParameters(fresh_vhost)) as conn:
            assert conn.channel().queue_declare("nodes-test", passive=True).method.message_count == 1
        bus.close()
