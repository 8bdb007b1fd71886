"""Django file storage on a NATS JetStream Object Store."""

import logging

from natsstorage.storage import NatsStorage

logging.getLogger("natsstorage").addHandler(logging.NullHandler())

__all__ = ["NatsStorage"]
__version__ = "0.1.0"
