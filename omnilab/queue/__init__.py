"""The run queue: rq broker, record-then-send, reconciliation, and `omnilab worker` (supervisor,
slots, spare horses, one horse per attempt)."""
