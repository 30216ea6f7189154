//! Trace context end to end: an upstream job's `traceparent` continues through the rule
//! worker to the outbound CloudEvent of the follow-up it created; an HTTP request's
//! `traceparent` comes back on the response; and the spans are exported over OTLP/HTTP to the
//! collector `OTEL_EXPORTER_OTLP_ENDPOINT` names (here a receiver in the test).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use followup_platform::telemetry::{self, Telemetry};
use followup_platform::trace::TraceParent;
use followup_store::MIGRATOR;
use followup_tests::{start_pipeline, token, EXAMPLES};
use serde_json::Value;
use sqlx::PgPool;

/// The upstream job's trace.
const INBOUND: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// An HTTP client's trace.
const CLIENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// What the receiver was sent: (request path, body), one per request.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A minimal OTLP/HTTP receiver: answers every POST with 200 and keeps what it was sent.
fn otlp_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let received: Received = Arc::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut length = 0;
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    keep.lock().unwrap().push((path, body));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (endpoint, received)
}

/// The telemetry of this test process, exporting to the receiver (set up once).
fn telemetry_exporting_to(endpoint: &str) -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
        telemetry::init()
    })
}

fn trace_id(traceparent: &str) -> String {
    TraceParent::parse(traceparent)
        .expect("a valid traceparent")
        .trace_id_hex()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_upstream_trace_continues_on_the_outbound_event_the_api_and_the_exported_spans(
    pool: PgPool,
) {
    // Given the service exporting spans to a collector
    let (endpoint, received) = otlp_receiver();
    let telemetry = telemetry_exporting_to(&endpoint);
    let pipeline = start_pipeline(pool, false).await;

    // When an upstream job publishes a failure with its trace context
    let mut failure: Value = serde_json::from_slice(
        &std::fs::read(format!("{EXAMPLES}/applicant_transfer.failed.json")).unwrap(),
    )
    .unwrap();
    failure["traceparent"] = Value::from(INBOUND);
    pipeline.publish_cloudevent(&failure).await;

    // Then the outbound CloudEvent of the exception it created carries the same trace, as a
    // child of a span of ours
    let stream = pipeline.js.get_stream("FOLLOWUPS").await.unwrap();
    let mut created = None;
    for _ in 0..200 {
        let count = stream.clone().info().await.unwrap().state.messages;
        for sequence in 1..=count {
            let message = stream.get_raw_message(sequence).await.unwrap();
            let event: Value = serde_json::from_slice(&message.payload).unwrap();
            if message.subject.starts_with("followups.events.")
                && event["type"] == "dk.esas.followup.created"
            {
                created = Some(event);
            }
        }
        if created.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let created = created.expect("the created event went out");
    let outbound = created["traceparent"]
        .as_str()
        .expect("the outbound CloudEvent has a traceparent");
    assert_eq!(trace_id(outbound), trace_id(INBOUND));
    assert_ne!(
        outbound, INBOUND,
        "our own span is the parent of the outbound event"
    );

    // And an HTTP request's trace comes back on its response
    let response = pipeline
        .http
        .get(format!("{}/v1/followups", pipeline.base))
        .bearer_auth(token("caseworker", "KP", "admissions"))
        .header("traceparent", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answered = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(trace_id(&answered), trace_id(CLIENT));

    // And the spans of both traces reach the collector
    let flushing = tokio::task::spawn_blocking(move || telemetry.flush());
    flushing.await.unwrap();
    let sent = received.lock().unwrap().clone();
    assert!(
        sent.iter().all(|(path, _)| path == "/v1/traces"),
        "{:?}",
        sent.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    let bodies: Vec<u8> = sent.into_iter().flat_map(|(_, body)| body).collect();
    for traceparent in [INBOUND, CLIENT] {
        let parsed = TraceParent::parse(traceparent).unwrap();
        assert!(
            contains(&bodies, &parsed.trace_id.to_bytes()),
            "no exported span of trace {traceparent}"
        );
    }
    for name in ["rule_worker.message", "http.request", "executor.batch"] {
        assert!(
            contains(&bodies, name.as_bytes()),
            "no span {name} exported"
        );
    }

    pipeline.stop().await;
}
