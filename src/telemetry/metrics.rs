//! The one registry of Prometheus metrics. Every metric of the contract
//! (DESIGN.md section 4) is created here, in an owned `Registry` (never the
//! global default), so tests can run many agents in one process and
//! `/metrics` shows exactly these series. What one Talkdesk account's
//! engine and actuator write carries an `account` label and is written
//! through that account's handle ([`Metrics::account`], `account.rs`).

mod account;
mod probes;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use account::AccountFamilies;
pub use account::{AccountMetrics, AccountVec};
pub use probes::{ProbeCell, ProbeFamilies};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Test calls: post-dial delay and time to answer, from a fraction of a
/// second (an IVR on the same SBC) to the ring timeout.
const CALL_BUCKETS: &[f64] = &[0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0];
/// Talkdesk calls: tens of milliseconds normally, up to the request timeout.
const TALKDESK_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Label values known from the configuration before anything happens: the
/// series [`Metrics::init_series`] creates at zero.
#[derive(Clone, Debug, Default)]
pub struct KnownLabels<'a> {
    /// Every account (`Config::account_ids`).
    pub accounts: Vec<&'a str>,
    /// `(id, type)` of every configured probe.
    pub probes: Vec<(&'a str, &'a str)>,
    /// Every decision cause (`engine::Cause::ALL`).
    pub causes: Vec<&'static str>,
    /// Every enabled webhook source.
    pub webhook_sources: Vec<&'static str>,
    /// Every Talkdesk operation (`talkdesk::Op::ALL`).
    pub talkdesk_ops: Vec<&'static str>,
    /// The name of every `[[notify]]` target.
    pub notify_targets: Vec<&'a str>,
}

/// Every metric name of the interface contract (DESIGN.md section 4) that
/// every agent exposes. `continuity_notifications_total`, also contract,
/// has series only for configured `[[notify]]` targets (created at zero by
/// [`Metrics::init_series`]).
pub const CONTRACT_METRICS: [&str; 16] = [
    "continuity_fallback_desired",
    "continuity_fallback_actual",
    "continuity_transitions_total",
    "continuity_probe_up",
    "continuity_probe_duration_seconds",
    "continuity_probe_results_total",
    "continuity_rule_state",
    "continuity_alerts_received_total",
    "continuity_alerts_active",
    "continuity_talkdesk_requests_total",
    "continuity_talkdesk_request_duration_seconds",
    "continuity_override_active",
    "continuity_leader",
    "continuity_flapping",
    "continuity_blind",
    "continuity_drift_total",
];

/// The call probe's metrics (also contract): histograms exist from the start
/// for every `call` probe ([`Metrics::init_series`]); the media gauges once a
/// call was answered (before that there is nothing to report, and 0 would
/// read as "no loss").
pub const CALL_METRICS: [&str; 5] = [
    "continuity_call_post_dial_delay_seconds",
    "continuity_call_answer_seconds",
    "continuity_call_media_packets",
    "continuity_call_media_loss_ratio",
    "continuity_call_media_jitter_seconds",
];

/// The families with an `account` label (its last): what one account's
/// engine, loop, actuator and Talkdesk client write ([`AccountMetrics`]).
/// No other family has the label: probes, webhooks, the API, notifications
/// and reloads are shared by all accounts; `continuity_leader` and
/// `continuity_epoch` are written by `cluster`, per account.
pub const ACCOUNT_METRICS: [&str; 16] = [
    "continuity_leader",
    "continuity_epoch",
    "continuity_fallback_desired",
    "continuity_fallback_actual",
    "continuity_transitions_total",
    "continuity_rule_state",
    "continuity_alerts_active",
    "continuity_talkdesk_requests_total",
    "continuity_talkdesk_request_duration_seconds",
    "continuity_override_active",
    "continuity_flapping",
    "continuity_blind",
    "continuity_divergence_seconds",
    "continuity_actuation_failures_total",
    "continuity_drift_total",
    "continuity_alerts_dropped_total",
];

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// The families labelled by account, written only through the handles
    /// of [`Metrics::account`].
    accounts: AccountFamilies,
    /// Every account's handle made so far, by id.
    handles: Arc<Mutex<BTreeMap<String, AccountMetrics>>>,
    /// `continuity_probe_up{probe,type}` (1 up, 0 down, -1 unknown),
    /// `continuity_probe_duration_seconds{probe,type}` and
    /// `continuity_probe_results_total{probe,result}`, one cell per probe.
    pub probes: ProbeFamilies,
    /// `{source, result}`: result is `accepted`, `duplicate`, `unauthorized`, `invalid`, ...
    pub alerts_received_total: IntCounterVec,
    /// `{probe}`: call probe, INVITE to the first 18x.
    pub call_post_dial_delay_seconds: HistogramVec,
    /// `{probe}`: call probe, INVITE to the 2xx answer.
    pub call_answer_seconds: HistogramVec,
    /// `{probe}`: RTP packets received in the last answered test call.
    pub call_media_packets: IntGaugeVec,
    /// `{probe}`: packet loss of the last answered test call, 0 to 1.
    pub call_media_loss_ratio: GaugeVec,
    /// `{probe}`: RFC 3550 interarrival jitter of the last answered test call.
    pub call_media_jitter_seconds: GaugeVec,
    /// Configuration reloads by result (`ok`, `invalid`, `needs_restart`, `no_file`).
    pub config_reloads_total: IntCounterVec,
    /// API connections open now.
    pub api_connections: IntGauge,
    /// API connections closed on arrival because `agent.max_connections`
    /// were open.
    pub api_connections_rejected_total: IntCounter,
    /// Every family name registered above, in registration order.
    names: Vec<String>,
    /// `{target, result}`: notifications by target name and result
    /// ([`NOTIFICATION_RESULTS`]).
    pub notifications_total: IntCounterVec,
    /// Live replicas sharded leadership last saw (this one included; 0
    /// before the first membership read or without sharded leadership).
    pub cluster_replicas: IntGauge,
    /// Damaged store files moved aside at start (`store::OpenOutcome`).
    pub store_recovered_total: IntCounter,
}

/// The `action` label values of `continuity_drift_total`.
pub const DRIFT_ACTIONS: [&str; 2] = ["adopted", "corrected"];

/// The `result` label values of `continuity_notifications_total`: `sent`,
/// `retried` (an attempt failed; another follows), `failed` (given up),
/// `dropped` (never sent: queue full, or the agent stopped first).
pub const NOTIFICATION_RESULTS: [&str; 4] = ["sent", "retried", "failed", "dropped"];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registrar::default();
        Metrics {
            accounts: AccountFamilies::register(&mut r),
            handles: Arc::default(),
            probes: r.add(Ok(ProbeFamilies::new())),
            alerts_received_total: r.int_counter_vec(
                "continuity_alerts_received_total",
                "Alert webhook deliveries by source and result.",
                &["source", "result"],
            ),
            call_post_dial_delay_seconds: r.histogram_vec(
                "continuity_call_post_dial_delay_seconds",
                "Test calls: time from INVITE to the first ringing or progress response (18x).",
                CALL_BUCKETS,
                &["probe"],
            ),
            call_answer_seconds: r.histogram_vec(
                "continuity_call_answer_seconds",
                "Test calls: time from INVITE to the answer (2xx).",
                CALL_BUCKETS,
                &["probe"],
            ),
            call_media_packets: r.int_gauge_vec(
                "continuity_call_media_packets",
                "Test calls: RTP packets received during the last answered call.",
                &["probe"],
            ),
            call_media_loss_ratio: r.gauge_vec(
                "continuity_call_media_loss_ratio",
                "Test calls: inbound RTP packet loss of the last answered call (0 to 1).",
                &["probe"],
            ),
            call_media_jitter_seconds: r.gauge_vec(
                "continuity_call_media_jitter_seconds",
                "Test calls: inbound RTP interarrival jitter (RFC 3550) of the last answered call.",
                &["probe"],
            ),
            config_reloads_total: r.int_counter_vec(
                "continuity_config_reloads_total",
                "Configuration reloads (SIGHUP, POST /-/reload) by result.",
                &["result"],
            ),
            api_connections: r.int_gauge("continuity_api_connections", "API connections open now."),
            api_connections_rejected_total: r.int_counter(
                "continuity_api_connections_rejected_total",
                "API connections closed on arrival because agent.max_connections were open.",
            ),
            notifications_total: r.int_counter_vec(
                "continuity_notifications_total",
                "Notifications by target and result (sent, retried, failed, dropped).",
                &["target", "result"],
            ),
            cluster_replicas: r.int_gauge(
                "continuity_cluster_replicas",
                "Live replicas sharing the accounts, as this replica last saw them.",
            ),
            store_recovered_total: r.int_counter(
                "continuity_store_recovered_total",
                "Damaged store files moved aside at start; the agent then started with a fresh store.",
            ),
            registry: r.registry,
            names: r.names,
        }
    }

    /// Creates every counter and histogram series whose labels are known from
    /// the configuration, at zero, so dashboards and `absent()` alerts see
    /// them before the first event: each account's too (its gauges at zero,
    /// `continuity_fallback_actual` at -1, see [`Metrics::account`]).
    /// `probe_up` and `rule_state` are not here: the daemon sets them from
    /// the engine's view at start.
    pub fn init_series(&self, known: &KnownLabels<'_>) {
        for account in &known.accounts {
            let m = self.account(account);
            for to in ["active", "inactive"] {
                for cause in &known.causes {
                    m.transitions_total.with_label_values(&[to, cause]);
                }
            }
            for op in &known.talkdesk_ops {
                m.talkdesk_request_duration_seconds.with_label_values(&[op]);
            }
            for action in DRIFT_ACTIONS {
                m.drift_total.with_label_values(&[action]);
            }
        }
        for (id, kind) in &known.probes {
            self.probes.cell(id, kind);
            if *kind == "call" {
                self.call_post_dial_delay_seconds.with_label_values(&[id]);
                self.call_answer_seconds.with_label_values(&[id]);
            }
        }
        for source in &known.webhook_sources {
            self.alerts_received_total
                .with_label_values(&[source, "accepted"]);
        }
        for result in ["ok", "invalid", "needs_restart"] {
            self.config_reloads_total.with_label_values(&[result]);
        }
        for target in &known.notify_targets {
            for result in NOTIFICATION_RESULTS {
                self.notifications_total
                    .with_label_values(&[target, result]);
            }
        }
    }

    /// The name of every metric family this registry exports, whether or not
    /// it has a series yet (`/metrics` omits a labelled family until its
    /// first series exists). What dashboards and alert rules may name.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl AccountFamilies {
    /// The families labelled by account, registered in `r`.
    fn register(r: &mut Registrar) -> AccountFamilies {
        AccountFamilies {
            leader: r.int_gauge_vec(
                "continuity_leader",
                "Whether this replica holds the account's lease and may actuate (0/1).",
                &["account"],
            ),
            epoch: r.int_gauge_vec(
                "continuity_epoch",
                "The account's leadership epoch this replica last saw (each change of leader adds one).",
                &["account"],
            ),
            fallback_desired: r.int_gauge_vec(
                "continuity_fallback_desired",
                "Whether the engine wants the fallback on (0/1).",
                &["account"],
            ),
            fallback_actual: r.int_gauge_vec(
                "continuity_fallback_actual",
                "Whether Talkdesk's fallback was last seen on (1), off (0) or unknown (-1).",
                &["account"],
            ),
            transitions_total: r.int_counter_vec(
                "continuity_transitions_total",
                "Desired-state changes by new state and cause.",
                &["to", "cause", "account"],
            ),
            rule_state: r.int_gauge_vec(
                "continuity_rule_state",
                "Rule state: 0 inactive, 1 pending, 2 firing, 3 clearing.",
                &["rule", "account"],
            ),
            alerts_active: r.int_gauge_vec(
                "continuity_alerts_active",
                "Alerts currently firing.",
                &["account"],
            ),
            talkdesk_requests_total: r.int_counter_vec(
                "continuity_talkdesk_requests_total",
                "Talkdesk API requests by operation and status.",
                &["op", "status", "account"],
            ),
            talkdesk_request_duration_seconds: r.histogram_vec(
                "continuity_talkdesk_request_duration_seconds",
                "Duration of Talkdesk API requests.",
                TALKDESK_BUCKETS,
                &["op", "account"],
            ),
            override_active: r.int_gauge_vec(
                "continuity_override_active",
                "Whether a manual override is in force (0/1).",
                &["account"],
            ),
            flapping: r.int_gauge_vec(
                "continuity_flapping",
                "Whether the flap latch holds the fallback on (0/1).",
                &["account"],
            ),
            blind: r.int_gauge_vec(
                "continuity_blind",
                "Whether the agent's own self-check fails, freezing probe-driven rules (0/1).",
                &["account"],
            ),
            divergence_seconds: r.gauge_vec(
                "continuity_divergence_seconds",
                "How long desired and actual fallback state have differed (0 when converged).",
                &["account"],
            ),
            actuation_failures_total: r.int_counter_vec(
                "continuity_actuation_failures_total",
                "Failed actuation attempts by error kind.",
                &["kind", "account"],
            ),
            drift_total: r.int_counter_vec(
                "continuity_drift_total",
                "Changes made to Talkdesk outside the agent, by what on_drift did (adopted, corrected).",
                &["action", "account"],
            ),
            alerts_dropped_total: r.int_counter_vec(
                "continuity_alerts_dropped_total",
                "New alerts not taken because alerts.max_active alerts were active.",
                &["account"],
            ),
        }
    }
}

/// Registers families and records their names, in order. A definition
/// that prometheus refuses, or a name used twice, is a bug: it panics at
/// start, where every test sees it.
#[derive(Default)]
struct Registrar {
    registry: Registry,
    names: Vec<String>,
}

impl Registrar {
    fn add<M: prometheus::core::Collector + Clone + 'static>(
        &mut self,
        m: prometheus::Result<M>,
    ) -> M {
        let m = m.expect("metric definition is valid");
        self.names
            .extend(m.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(Box::new(m.clone()))
            .expect("metric names are unique");
        m
    }

    fn int_gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels))
    }

    fn int_counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        self.add(GaugeVec::new(Opts::new(name, help), labels))
    }

    fn histogram_vec(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
        labels: &[&str],
    ) -> HistogramVec {
        self.add(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        ))
    }

    fn int_gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help))
    }

    fn int_counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help))
    }
}

#[cfg(test)]
mod tests {
    use prometheus::core::Collector;

    use super::*;
    use crate::domain::ProbeResult;

    #[test]
    fn every_contract_metric_is_exposed() {
        let m = Metrics::new();
        // An account's plain gauges and counters appear with its handle;
        // vec metrics once a label set exists.
        let a = m.account("default");
        a.transitions_total
            .with_label_values(&["active", "rule"])
            .inc();
        m.probes.set_up("trunk-a", "sip", 1);
        m.probes
            .cell("trunk-a", "sip")
            .record(0.01, ProbeResult::Success);
        a.rule_state.with_label_values(&["r"]).set(0);
        m.alerts_received_total
            .with_label_values(&["generic", "accepted"])
            .inc();
        a.talkdesk_requests_total
            .with_label_values(&["put_settings", "200"])
            .inc();
        a.talkdesk_request_duration_seconds
            .with_label_values(&["put_settings"])
            .observe(0.1);
        a.drift_total.with_label_values(&["adopted"]).inc();
        let text = m.render();
        for name in CONTRACT_METRICS {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing");
        }
        assert!(text.contains(r#"continuity_fallback_actual{account="default"} -1"#));
        assert!(text.contains(
            r#"continuity_transitions_total{account="default",cause="rule",to="active"} 1"#
        ));
    }

    #[test]
    fn names_lists_every_family_even_without_series() {
        let m = Metrics::new();
        let names = m.names();
        for name in CONTRACT_METRICS.iter().chain(&CALL_METRICS) {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        // Families with series are exactly those in the exposition.
        m.init_series(&KnownLabels::default());
        for family in m.registry.gather() {
            assert!(
                names.iter().any(|n| n == family.name()),
                "{}",
                family.name()
            );
        }
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "duplicate names: {names:?}");
    }

    #[test]
    fn init_series_exposes_known_series_at_zero() {
        let m = Metrics::new();
        m.init_series(&KnownLabels {
            accounts: vec!["default"],
            probes: vec![("trunk-a", "sip"), ("test-call", "call")],
            causes: vec!["rule", "override"],
            webhook_sources: vec!["grafana"],
            talkdesk_ops: vec!["put_settings"],
            notify_targets: vec!["pd"],
        });
        let text = m.render();
        for series in [
            r#"continuity_transitions_total{account="default",cause="rule",to="active"} 0"#,
            r#"continuity_transitions_total{account="default",cause="override",to="inactive"} 0"#,
            r#"continuity_probe_duration_seconds_count{probe="trunk-a",type="sip"} 0"#,
            r#"continuity_probe_results_total{probe="trunk-a",result="success"} 0"#,
            r#"continuity_probe_results_total{probe="trunk-a",result="failure"} 0"#,
            r#"continuity_alerts_received_total{result="accepted",source="grafana"} 0"#,
            r#"continuity_talkdesk_request_duration_seconds_count{account="default",op="put_settings"} 0"#,
            r#"continuity_call_post_dial_delay_seconds_count{probe="test-call"} 0"#,
            r#"continuity_call_answer_seconds_count{probe="test-call"} 0"#,
            r#"continuity_drift_total{account="default",action="adopted"} 0"#,
            r#"continuity_drift_total{account="default",action="corrected"} 0"#,
            r#"continuity_notifications_total{result="sent",target="pd"} 0"#,
            r#"continuity_notifications_total{result="dropped",target="pd"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        // Only call probes have call series, and media gauges wait for an answer.
        assert!(!text.contains(r#"continuity_call_answer_seconds_count{probe="trunk-a"}"#));
        assert!(!text.contains("continuity_call_media_packets{"));
    }

    /// Exactly the families of `ACCOUNT_METRICS` carry the account, as
    /// their last label.
    #[test]
    fn only_account_families_carry_the_account() {
        let m = Metrics::new();
        m.init_series(&KnownLabels {
            accounts: vec!["acme"],
            probes: vec![("trunk-a", "sip")],
            causes: vec!["rule"],
            webhook_sources: vec!["grafana"],
            talkdesk_ops: vec!["put_settings"],
            notify_targets: vec!["pd"],
        });
        let a = m.account("acme");
        a.rule_state.with_label_values(&["r"]).set(1);
        a.talkdesk_requests_total
            .with_label_values(&["token", "200"])
            .inc();
        a.actuation_failures_total
            .with_label_values(&["timeout"])
            .inc();
        let families = m.registry.gather();
        for name in ACCOUNT_METRICS {
            assert!(
                families.iter().any(|f| f.name() == name),
                "{name} has no series"
            );
        }
        for family in &families {
            let labelled = ACCOUNT_METRICS.contains(&family.name());
            for metric in family.get_metric() {
                let has = metric
                    .get_label()
                    .iter()
                    .any(|l| l.name() == "account" && l.value() == "acme");
                assert_eq!(has, labelled, "{}: {:?}", family.name(), metric.get_label());
            }
        }
        // The account is the last label each family declares (the handles
        // append it).
        let f = &m.accounts;
        let families: [&dyn Collector; ACCOUNT_METRICS.len()] = [
            &f.leader,
            &f.epoch,
            &f.fallback_desired,
            &f.fallback_actual,
            &f.transitions_total,
            &f.rule_state,
            &f.alerts_active,
            &f.talkdesk_requests_total,
            &f.talkdesk_request_duration_seconds,
            &f.override_active,
            &f.flapping,
            &f.blind,
            &f.divergence_seconds,
            &f.actuation_failures_total,
            &f.drift_total,
            &f.alerts_dropped_total,
        ];
        for desc in families.iter().flat_map(|c| c.desc()) {
            assert!(ACCOUNT_METRICS.contains(&desc.fq_name.as_str()));
            assert_eq!(
                desc.variable_labels.last().map(String::as_str),
                Some("account"),
                "{}",
                desc.fq_name
            );
        }
    }

    /// Two accounts' handles write two series of each family, and
    /// `init_series` creates both accounts' series; making a handle again,
    /// or a reload's `init_series`, resets neither.
    #[test]
    fn each_account_has_its_own_series() {
        let m = Metrics::new();
        let known = KnownLabels {
            accounts: vec!["acme", "globex"],
            causes: vec!["rule"],
            talkdesk_ops: vec!["put_settings"],
            ..KnownLabels::default()
        };
        m.init_series(&known);
        let text = m.render();
        for account in ["acme", "globex"] {
            for series in [
                format!(r#"continuity_fallback_actual{{account="{account}"}} -1"#),
                format!(r#"continuity_fallback_desired{{account="{account}"}} 0"#),
                format!(r#"continuity_alerts_dropped_total{{account="{account}"}} 0"#),
                format!(
                    r#"continuity_transitions_total{{account="{account}",cause="rule",to="inactive"}} 0"#
                ),
                format!(
                    r#"continuity_talkdesk_request_duration_seconds_count{{account="{account}",op="put_settings"}} 0"#
                ),
                format!(r#"continuity_drift_total{{account="{account}",action="corrected"}} 0"#),
            ] {
                assert!(text.contains(&series), "{series} missing from:\n{text}");
            }
        }

        let (acme, globex) = (m.account("acme"), m.account("globex"));
        assert_eq!(&*acme.account, "acme");
        acme.fallback_actual.set(1);
        globex.fallback_actual.set(0);
        acme.transitions_total
            .with_label_values(&["active", "rule"])
            .inc();
        globex.rule_state.with_label_values(&["trunk-down"]).set(2);
        m.init_series(&known);
        let text = m.render();
        for series in [
            r#"continuity_fallback_actual{account="acme"} 1"#,
            r#"continuity_fallback_actual{account="globex"} 0"#,
            r#"continuity_transitions_total{account="acme",cause="rule",to="active"} 1"#,
            r#"continuity_transitions_total{account="globex",cause="rule",to="active"} 0"#,
            r#"continuity_rule_state{account="globex",rule="trunk-down"} 2"#,
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
        assert!(!text.contains(r#"continuity_rule_state{account="acme""#));

        // Removing one account's rule series leaves the other's.
        acme.rule_state.with_label_values(&["trunk-down"]).set(1);
        globex
            .rule_state
            .remove_label_values(&["trunk-down"])
            .unwrap();
        let text = m.render();
        assert!(text.contains(r#"continuity_rule_state{account="acme",rule="trunk-down"} 1"#));
        assert!(!text.contains(r#"continuity_rule_state{account="globex""#));
    }
}
