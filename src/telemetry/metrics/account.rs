//! The per-account side of the registry. One deployment may drive several
//! Talkdesk accounts, each with its own engine, loop and actuator; the
//! metrics those write carry an `account` label (the last one of each
//! family). Probes, webhooks, the API, notifications and reloads are shared:
//! their metrics have no `account` label.
//!
//! Writers get an [`AccountMetrics`] handle from [`Metrics::account`] and
//! never see the labelled families themselves: a writer that forgot the
//! account could not compile, rather than panic on a label count at run time.

use std::sync::Arc;

use prometheus::core::{MetricVec, MetricVecBuilder};
use prometheus::{Gauge, GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::Metrics;

/// The families labelled by account, as registered by [`Metrics::new`];
/// only [`AccountMetrics::new`] takes series from them.
#[derive(Clone)]
pub(super) struct AccountFamilies {
    pub leader: IntGaugeVec,
    pub epoch: IntGaugeVec,
    pub fallback_desired: IntGaugeVec,
    pub fallback_actual: IntGaugeVec,
    pub transitions_total: IntCounterVec,
    pub rule_state: IntGaugeVec,
    pub alerts_active: IntGaugeVec,
    pub talkdesk_requests_total: IntCounterVec,
    pub talkdesk_request_duration_seconds: HistogramVec,
    pub override_active: IntGaugeVec,
    pub flapping: IntGaugeVec,
    pub blind: IntGaugeVec,
    pub divergence_seconds: GaugeVec,
    pub actuation_failures_total: IntCounterVec,
    pub drift_total: IntCounterVec,
    pub alerts_dropped_total: IntCounterVec,
}

/// A family with more labels than `account`, bound to one account: its
/// methods take the other labels, in the family's order, and append the
/// account, so writers read as they would against the plain family.
#[derive(Clone)]
pub struct AccountVec<V> {
    family: V,
    account: Arc<str>,
}

impl<B: MetricVecBuilder> AccountVec<MetricVec<B>> {
    fn bind(family: &MetricVec<B>, account: &Arc<str>) -> Self {
        AccountVec {
            family: family.clone(),
            account: account.clone(),
        }
    }

    /// This account's series for `values` (every label but `account`),
    /// created at zero if new. Panics on a wrong number of values, like
    /// `MetricVec::with_label_values`: a programming error.
    pub fn with_label_values<V: AsRef<str>>(&self, values: &[V]) -> B::M {
        self.family.with_label_values(&self.labels(values))
    }

    /// Removes this account's series for `values` (a rule the
    /// configuration no longer has).
    pub fn remove_label_values<V: AsRef<str>>(&self, values: &[V]) -> prometheus::Result<()> {
        self.family.remove_label_values(&self.labels(values))
    }

    fn labels<'a, V: AsRef<str>>(&'a self, values: &'a [V]) -> Vec<&'a str> {
        values
            .iter()
            .map(AsRef::as_ref)
            .chain([&*self.account])
            .collect()
    }
}

/// One account's series: what its loop, actuator and Talkdesk client write.
/// The fields have the names the unlabelled metrics had, so writers keep
/// `m.fallback_actual.set(..)`. Cloning copies a handful of `Arc`s.
#[derive(Clone)]
pub struct AccountMetrics {
    /// The `account` label value.
    pub account: Arc<str>,
    /// This replica holds the account's lease (0/1).
    pub leader: IntGauge,
    /// The account's lease epoch this replica last saw (0: none yet).
    pub epoch: IntGauge,
    /// 0/1.
    pub fallback_desired: IntGauge,
    /// 0/1, -1 unknown.
    pub fallback_actual: IntGauge,
    /// `{to, cause}`.
    pub transitions_total: AccountVec<IntCounterVec>,
    /// `{rule}`: 0 inactive, 1 pending, 2 firing, 3 clearing.
    pub rule_state: AccountVec<IntGaugeVec>,
    pub alerts_active: IntGauge,
    /// `{op, status}`: op is `token`, `get_settings`, `put_settings`, `get_activation`, `put_activation`;
    /// status is the HTTP status or `error` (transport failure) / `timeout`.
    pub talkdesk_requests_total: AccountVec<IntCounterVec>,
    /// `{op}`.
    pub talkdesk_request_duration_seconds: AccountVec<HistogramVec>,
    pub override_active: IntGauge,
    pub flapping: IntGauge,
    pub blind: IntGauge,
    /// Seconds since desired and actual started to differ (0 when converged).
    /// Not in the contract: lets operators alert on "actuation stuck".
    pub divergence_seconds: Gauge,
    /// `{kind}`: failed actuation attempts by error kind.
    pub actuation_failures_total: AccountVec<IntCounterVec>,
    /// `{action}`: changes made outside the agent, by what `on_drift` did
    /// with them (`adopted` or `corrected`).
    pub drift_total: AccountVec<IntCounterVec>,
    /// New alerts not taken because `alerts.max_active` were active.
    pub alerts_dropped_total: IntCounter,
}

impl AccountMetrics {
    /// Takes (creating at zero) the account's unlabelled series and binds the
    /// labelled families to it. `fallback_actual` is left to the caller,
    /// [`Metrics::account`], which knows whether the account is new.
    pub(super) fn new(f: &AccountFamilies, account: &str) -> AccountMetrics {
        let account: Arc<str> = Arc::from(account);
        let a = [&*account];
        AccountMetrics {
            leader: f.leader.with_label_values(&a),
            epoch: f.epoch.with_label_values(&a),
            fallback_desired: f.fallback_desired.with_label_values(&a),
            fallback_actual: f.fallback_actual.with_label_values(&a),
            transitions_total: AccountVec::bind(&f.transitions_total, &account),
            rule_state: AccountVec::bind(&f.rule_state, &account),
            alerts_active: f.alerts_active.with_label_values(&a),
            talkdesk_requests_total: AccountVec::bind(&f.talkdesk_requests_total, &account),
            talkdesk_request_duration_seconds: AccountVec::bind(
                &f.talkdesk_request_duration_seconds,
                &account,
            ),
            override_active: f.override_active.with_label_values(&a),
            flapping: f.flapping.with_label_values(&a),
            blind: f.blind.with_label_values(&a),
            divergence_seconds: f.divergence_seconds.with_label_values(&a),
            actuation_failures_total: AccountVec::bind(&f.actuation_failures_total, &account),
            drift_total: AccountVec::bind(&f.drift_total, &account),
            alerts_dropped_total: f.alerts_dropped_total.with_label_values(&a),
            account,
        }
    }
}

impl Metrics {
    /// The handle on `id`'s series. The first call for an account creates
    /// them, `continuity_fallback_actual` at -1 (unknown until its actuator
    /// reads Talkdesk); later calls return the same handle, so a reload's
    /// [`Metrics::init_series`] resets nothing.
    pub fn account(&self, id: &str) -> AccountMetrics {
        let mut handles = self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(m) = handles.get(id) {
            return m.clone();
        }
        let m = AccountMetrics::new(&self.accounts, id);
        m.fallback_actual.set(-1);
        handles.insert(id.to_string(), m.clone());
        m
    }
}
