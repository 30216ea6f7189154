//! Tracing, set up once per process. `RUST_LOG` filters (default `info` for the server, `warn`
//! for the command-line tool, whose results are its printed output);
//! `FOLLOWUP_LOG_FORMAT=json` writes one JSON object per line for log collectors.
//!
//! Every span also carries a W3C trace context (OpenTelemetry), so that a trace started by an
//! upstream job or an HTTP client continues through the service ([`crate::trace`]). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are exported there over OTLP/HTTP (protobuf),
//! in batches; [`Telemetry::shutdown`] flushes what is left.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The name spans are exported under (`service.name`).
const SERVICE_NAME: &str = "esas-followups";

/// The telemetry of the process; keep it until the end of `main`, then [`Telemetry::shutdown`].
#[derive(Debug)]
pub struct Telemetry {
    /// Makes the trace ids of spans, and exports spans when an endpoint is configured.
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans not exported yet (a no-op without an OTLP endpoint).
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(error.message = %error, "exporting spans failed");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        self.flush();
        let _ = self.provider.shutdown();
    }
}

/// Installs the global subscriber: logs to stderr, and spans with trace context (exported
/// over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set). Call once, first thing in `main`.
pub fn init() -> Telemetry {
    init_with_default("info")
}

/// [`init`] with another log filter for when `RUST_LOG` is unset (the command-line tool
/// uses `warn`, so that the NATS client's connection lines do not mix with its output).
pub fn init_with_default(default_filter: &str) -> Telemetry {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let provider = provider(endpoint.as_deref());
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer(SERVICE_NAME))
        .with_filter(EnvFilter::new("info"));
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("FOLLOWUP_LOG_FORMAT").is_ok_and(|f| f == "json");
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().with_filter(filter()).boxed()
    } else {
        fmt.with_filter(filter()).boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(otel)
        .with(fmt)
        .try_init();
    Telemetry { provider }
}

/// The tracer provider: exporting to `endpoint` (OTLP/HTTP) when given, else only making
/// trace ids.
fn provider(endpoint: Option<&str>) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(SERVICE_NAME)
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else {
        return builder.build();
    };
    let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(traces)
        .build()
    {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(error) => {
            eprintln!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: cannot export spans: {error}");
            builder.build()
        }
    }
}
