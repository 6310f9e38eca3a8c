"""RabbitMQ behind the Bus interface: quorum queues, pipelined publisher confirms, batch consumers.

- `topology`: the exchanges, and each queue with its retry and dead-letter queues.
- `publisher`: batches published with pipelined confirms (`RabbitPublisher`).
- `consumer`: a queue consumed in batches, with retries and dead letters (`QueueConsumer`).
- `dead_letters`: the dead-letter administration behind `hai dlq list` and `hai dlq replay`.
- `bus`: `RabbitBus`, the Bus of shared/messaging/base.py assembled from the above.

Threading follows pika's rule of one connection per thread: a publisher owns a SelectConnection
whose ioloop runs in the publisher's own daemon thread and is reached only through
`add_callback_threadsafe`; each `consume` call owns a BlockingConnection on the calling thread.
"""

from shared.messaging.rabbit.bus import RabbitBus
from shared.messaging.rabbit.connection import BrokerUnavailable
from shared.messaging.rabbit.dead_letters import DeadLetters

__all__ = ["BrokerUnavailable", "DeadLetters", "RabbitBus"]
