//! Table tests of the criteria over hand-written Prometheus API replies.
