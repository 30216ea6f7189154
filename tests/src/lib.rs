//! End-to-end tests of the whole pipeline live in `tests/tests/`: contract examples published
//! on NATS, through the rule worker, projector and relay, to the HTTP API and the outbound
//! stream. This library is empty; the crate exists for those tests.
