-- W3C trace context of the request or inbound message that caused an event: kept with the
-- event so that the trace continues on the outbound CloudEvent the relay publishes for it.
ALTER TABLE events ADD COLUMN traceparent TEXT;
