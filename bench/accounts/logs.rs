//! The agent's logs during the run: JSON lines at `info`, formatted as in
//! production (their cost is part of a decision's) into a sink or stderr,
//! and every WARN or ERROR line counted by message, so the report can say
//! what went wrong when an account is slow (a write refused by the fence, a
//! lease renewed too late) without keeping the whole log.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

static WARNINGS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Installs the subscriber; `to_stderr` shows the log instead of discarding it.
pub fn init(to_stderr: bool) {
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false);
    let registry = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info"))
        .with(Counter);
    let _ = if to_stderr {
        registry.with(json.with_writer(std::io::stderr)).try_init()
    } else {
        registry.with(json.with_writer(std::io::sink)).try_init()
    };
}

/// WARN and ERROR lines since the last call, by message, most frequent first.
pub fn take_warnings() -> Vec<(String, u64)> {
    let mut seen = std::mem::take(&mut *WARNINGS.lock().unwrap_or_else(|p| p.into_inner()))
        .into_iter()
        .collect::<Vec<_>>();
    seen.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    seen
}

struct Counter;

impl<S: Subscriber> Layer<S> for Counter {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() > Level::WARN {
            return;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        *WARNINGS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(message.0)
            .or_default() += 1;
    }
}

struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}
