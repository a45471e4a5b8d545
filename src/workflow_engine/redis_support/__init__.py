"""Redis-backed pieces of the distributed mode (queues live in `queue.bullmq`)."""
