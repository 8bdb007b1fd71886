"""Django file storage on a NATS JetStream Object Store."""

from natsstorage.storage import NatsStorage

__all__ = ["NatsStorage"]
__version__ = "0.1.0"
