//! Reloading the configuration (SIGHUP, `POST /-/reload`) without a restart.
//!
//! The file the agent started from is read again by the same loader as
//! `check-config`, so a reload refuses exactly what `check-config` would, with
//! every error listed. It is also refused when it changes what only a restart
//! can change ([`needs_restart`]: the listening socket and the store). A
//! refused reload changes nothing: the running configuration is kept.
//!
//! Otherwise every account's loop applies its share between two events
//! (`Loop::reconfigure`; the new probes are shared, each account gets its
//! own view of the file, calendar and Talkdesk parts):
//! - the engine is rebuilt from the new spec and its current snapshot
//!   (`Engine::restore`, the same path as a restart): probe health, rules
//!   whose checksum did not change, alerts, the override, the flap latch and
//!   the desired state carry over, so a reload by itself switches nothing on
//!   or off (a rule that was edited while holding the fallback restarts
//!   clearing, as after a restart);
//! - probes, self-check and calendar are stopped and started again from the
//!   new configuration (their state lives in the engine, not in them);
//! - the actuator gets the new Talkdesk client, options and profiles (the
//!   running one through its channel, later leadership terms' from the
//!   supervisor);
//! - the HTTP API is rebuilt behind the same socket (tokens, webhook
//!   credentials, limits).
//!
//! Each attempt is counted in `continuity_config_reloads_total{result}`
//! (`ok`, `invalid`, `needs_restart`, `no_file`), logged once and audited.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::event_loop::Reconfigured;
use super::inputs::{spawn_inputs, start_calendar};
use super::run::{ApiParts, talkdesk_parts};
use crate::config::{self, Config};
use crate::domain::Timestamp;
use crate::engine::Event;
use crate::server::control::{ReloadError, Reloaded};
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink, Metrics};

/// What a reload reaches in one account.
pub(super) struct AccountReload {
    pub id: String,
    /// The account's event channel (its new calendar sends here).
    pub events: mpsc::Sender<Event>,
    /// The account's loop takes its share of the reload here.
    pub reconfigure: mpsc::Sender<Reconfigured>,
    pub audit: Arc<dyn AuditSink>,
    /// The account's series (its new Talkdesk client counts there).
    pub metrics: AccountMetrics,
}

/// What a reload replaces: the shared inputs, the API, and through each
/// account's loop its engine, probes, calendar and actuator.
pub(super) struct Reloader {
    /// The running configuration (the whole file).
    pub config: Arc<Config>,
    pub metrics: Metrics,
    /// Where the shared probes send (fanned out to every account).
    pub probe_events: mpsc::Sender<Event>,
    /// Parent of every input's token.
    pub cancel: CancellationToken,
    /// Stops the running probes and self-check.
    pub inputs_stop: CancellationToken,
    /// The API the HTTP front serves (see `run::serve`).
    pub api: watch::Sender<Router>,
    pub api_parts: ApiParts,
    pub accounts: Vec<AccountReload>,
}

impl Reloader {
    /// Reads the file again and applies it, or refuses it and keeps the
    /// running configuration. Counted, logged and audited either way.
    pub(super) async fn reload(&mut self, actor: &str) -> Result<Reloaded, ReloadError> {
        let old = self.config.clone();
        let result = match prepare(&old) {
            Ok(new) => self.apply(&old, new).await,
            Err(e) => Err(e),
        };
        self.record(actor, &old, &result);
        result
    }

    async fn apply(&mut self, old: &Config, new: Config) -> Result<Reloaded, ReloadError> {
        let changed = changed_sections(old, &new);
        let new = Arc::new(new);
        // Everything is built before anything is stopped: if a new client,
        // probe or calendar cannot be built, nothing has changed yet.
        let shares = self.build_shares(&new).await?;
        let inputs = match spawn_inputs(&new, &self.probe_events, &self.metrics, &self.cancel).await
        {
            Ok(inputs) => inputs,
            Err(e) => {
                discard(shares).await;
                return Err(ReloadError::Invalid(vec![e.to_string()]));
            }
        };
        // The old inputs stop only now that the new ones run.
        self.inputs_stop.cancel();
        self.inputs_stop = inputs.stop;
        for (index, (a, (view, talkdesk, calendar))) in self.accounts.iter().zip(shares).enumerate()
        {
            let (done, applied) = oneshot::channel();
            let share = Reconfigured {
                config: view,
                probes: inputs.probes.for_account(index),
                calendar,
                talkdesk,
                done,
            };
            if a.reconfigure.send(share).await.is_err() || applied.await.is_err() {
                return Err(ReloadError::ShuttingDown);
            }
        }
        // Series the new file names (probes, notification targets, every
        // account's), once for the whole reload.
        self.metrics
            .init_series(&super::run::known_labels(&new, &new.account_ids()));
        let _previous = self.api.send_replace(self.api_parts.router(&new));
        self.config = new.clone();
        Ok(Reloaded {
            origin: new.origin.clone(),
            changed,
        })
    }

    /// Each account's view of `new`, its Talkdesk parts and its calendar;
    /// on the first failure, what was built is stopped again.
    async fn build_shares(&self, new: &Config) -> Result<Vec<Share>, ReloadError> {
        let mut shares = Vec::with_capacity(self.accounts.len());
        for a in &self.accounts {
            match share(a, new).await {
                Ok(share) => shares.push(share),
                Err(e) => {
                    discard(shares).await;
                    return Err(e);
                }
            }
        }
        Ok(shares)
    }
}

/// One account's part of a reload, built but not applied yet.
type Share = (
    Arc<Config>,
    crate::talkdesk::actuator::Reconfigure,
    Option<crate::calendar::Calendar>,
);

async fn share(a: &AccountReload, new: &Config) -> Result<Share, ReloadError> {
    let view = new.for_account(&a.id).ok_or_else(|| {
        ReloadError::NeedsRestart(vec![format!(
            "accounts: {} is gone; adding or removing accounts needs a restart",
            a.id
        )])
    })?;
    let talkdesk = talkdesk_parts(&view, a.metrics.clone(), a.audit.clone())
        .map_err(|e| ReloadError::Invalid(vec![format!("{}: talkdesk: {e}", a.id)]))?;
    let calendar = start_calendar(&view, &a.events)
        .await
        .map_err(|e| ReloadError::Invalid(vec![format!("{}: {e}", a.id)]))?;
    Ok((Arc::new(view), talkdesk, calendar))
}

/// A reload that is not applied: the calendars it started stop again.
async fn discard(shares: Vec<Share>) {
    for (_, _, calendar) in shares {
        if let Some(c) = calendar {
            c.shutdown().await;
        }
    }
}

/// Loads and validates the file the running configuration came from.
fn prepare(old: &Config) -> Result<Config, ReloadError> {
    let path = old.path.as_deref().ok_or(ReloadError::NoFile)?;
    let new = config::load(path).map_err(|errs| {
        ReloadError::Invalid(errs.errors.iter().map(ToString::to_string).collect())
    })?;
    let restart = needs_restart(old, &new);
    if restart.is_empty() {
        Ok(new)
    } else {
        Err(ReloadError::NeedsRestart(restart))
    }
}

/// What only a restart can change: the socket is bound, the store open, the
/// lease claimed under `[cluster]`'s instance id and timings, and one engine
/// and actuator started per account.
/// A reload that changes one of them is refused whole (rather than applied
/// in part), so the running configuration always is one file's content.
pub(super) fn needs_restart(old: &Config, new: &Config) -> Vec<String> {
    let mut v = Vec::new();
    if old.raw.agent.listen != new.raw.agent.listen {
        v.push(format!(
            "agent.listen: changed from {} to {}; the socket is bound at start: restart the agent to apply it",
            old.raw.agent.listen, new.raw.agent.listen
        ));
    }
    let front = |c: &Config| {
        let a = &c.raw.agent;
        (
            a.max_connections,
            a.header_read_timeout,
            a.tls_cert_file.clone(),
            a.tls_key_file.clone(),
        )
    };
    if front(old) != front(new) {
        v.push(
            "agent: max_connections, header_read_timeout or TLS files changed; the API's socket is set up at start: restart the agent to apply it"
                .to_string(),
        );
    }
    // The URL is not shown: it may hold a password.
    if old.raw.store.url != new.raw.store.url
        || old.raw.store.password_file != new.raw.store.password_file
    {
        v.push(
            "store: url or password_file changed; the store is opened at start: restart the agent to apply it"
                .to_string(),
        );
    }
    // Compared in their serialized form (the section has no secrets).
    if serde_json::to_value(&old.raw.cluster).ok() != serde_json::to_value(&new.raw.cluster).ok() {
        v.push(
            "cluster: changed; the lease is claimed at start under this instance id and timings: restart the agent to apply it"
                .to_string(),
        );
    }
    // Which accounts, not their order: an account's content reloads in place.
    let ids = |c: &Config| c.account_ids().into_iter().collect::<BTreeSet<String>>();
    let (was, is) = (ids(old), ids(new));
    if was != is {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        v.push(format!(
            "accounts: changed from {} to {}; each account runs its own engine and actuator, started with the agent: restart the agent to apply it",
            list(&was),
            list(&is)
        ));
    }
    v
}

/// The top-level sections whose content differs (secrets compare by their
/// `*_file` path or presence only: their values are never serialized).
fn changed_sections(old: &Config, new: &Config) -> Vec<String> {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(&old.raw),
        serde_json::to_value(&new.raw),
    ) else {
        return vec!["(unknown)".to_string()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

impl Reloader {
    fn record(&self, actor: &str, old: &Config, result: &Result<Reloaded, ReloadError>) {
        let (label, message) = match result {
            Ok(done) => {
                let what = if done.changed.is_empty() {
                    "nothing changed".to_string()
                } else {
                    format!("changed: {}", done.changed.join(", "))
                };
                tracing::info!(message = "Configuration reloaded.", origin = %done.origin, actor, changed = %what);
                (
                    "ok",
                    format!(
                        "configuration reloaded from {} by {actor}; {what}",
                        done.origin
                    ),
                )
            }
            Err(e) => {
                let label = match e {
                    ReloadError::Invalid(_) => "invalid",
                    ReloadError::NeedsRestart(_) => "needs_restart",
                    ReloadError::NoFile => "no_file",
                    ReloadError::ShuttingDown => "shutting_down",
                };
                let errors = e.errors().join("; ");
                tracing::warn!(message = "Configuration reload refused; the running configuration is kept.", origin = %old.origin, actor, reason = %e, errors = %errors);
                (
                    label,
                    format!("configuration reload by {actor} refused ({e}): {errors}"),
                )
            }
        };
        self.metrics
            .config_reloads_total
            .with_label_values(&[label])
            .inc();
        // Every account's log tells it: a reload changes what each decides with.
        for a in &self.accounts {
            a.audit.record(AuditRecord::new(
                Timestamp::now(),
                AuditKind::Reload,
                message.clone(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(extra: &str) -> Config {
        let src = format!(
            r#"
[talkdesk]
account = "acme"
client_id = "id"
client_secret = "secret"
[profiles.backup]
default = "+14155558888"
{extra}
"#
        );
        config::from_toml_str_strict(&src, "t.toml", std::path::Path::new("/etc/ca"), false)
            .unwrap()
    }

    #[test]
    fn the_socket_and_the_store_need_a_restart_and_the_url_is_not_shown() {
        let old = load("");
        assert!(needs_restart(&old, &load("")).is_empty());
        let moved = load("[agent]\nlisten = \"127.0.0.1:9999\"");
        let why = needs_restart(&old, &moved);
        assert!(why[0].starts_with("agent.listen"), "{why:?}");
        let pg = load("[store]\nurl = \"postgres://u:hunter2@db/x\"");
        let why = needs_restart(&old, &pg);
        assert!(why[0].starts_with("store"), "{why:?}");
        assert!(!why[0].contains("hunter2"), "{why:?}");
        let replica = |id: &str| {
            load(&format!(
                "[store]\nurl = \"postgres://agent@db/x\"\n[cluster]\ninstance_id = \"{id}\""
            ))
        };
        assert!(needs_restart(&replica("a"), &replica("a")).is_empty());
        let why = needs_restart(&replica("a"), &replica("b"));
        assert!(why[0].starts_with("cluster"), "{why:?}");
    }

    /// Adding, removing or renaming an account needs a restart (an engine
    /// and actuator per account); editing one, or reordering them, does not.
    #[test]
    fn accounts_added_removed_or_renamed_need_a_restart() {
        let accounts = |ids: &[&str], number: &str| {
            let mut src = String::new();
            for id in ids {
                src += &format!(
                    "[[accounts]]\nid = \"{id}\"\n[accounts.talkdesk]\naccount = \"{id}\"\n\
                     client_id = \"id\"\nclient_secret = \"secret\"\n\
                     [accounts.profiles.backup]\ndefault = \"{number}\"\n"
                );
            }
            config::from_toml_str_strict(&src, "t.toml", std::path::Path::new("/etc/ca"), false)
                .unwrap()
        };
        let two = accounts(&["acme", "globex"], "+14155558888");
        assert!(needs_restart(&two, &accounts(&["acme", "globex"], "+14155550000")).is_empty());
        assert!(needs_restart(&two, &accounts(&["globex", "acme"], "+14155558888")).is_empty());
        for (new, shown) in [
            (accounts(&["acme"], "+14155558888"), "acme, globex to acme;"),
            (
                accounts(&["acme", "globex", "initech"], "+14155558888"),
                "acme, globex to acme, globex, initech;",
            ),
            (
                accounts(&["acme", "umbrella"], "+14155558888"),
                "acme, globex to acme, umbrella;",
            ),
        ] {
            let why = needs_restart(&two, &new);
            assert_eq!(why.len(), 1, "{why:?}");
            assert!(
                why[0].starts_with("accounts: changed from ")
                    && why[0].contains(shown)
                    && why[0].ends_with("restart the agent to apply it"),
                "{why:?}"
            );
        }
        // A file without [[accounts]] is the one account `default`.
        let why = needs_restart(&load(""), &two);
        assert!(why[0].contains("from default to acme, globex"), "{why:?}");
    }

    #[test]
    fn changed_sections_name_what_differs() {
        let old = load("");
        assert!(changed_sections(&old, &load("")).is_empty());
        let new = load("[engine]\nflap_max = 9");
        assert_eq!(changed_sections(&old, &new), ["engine"]);
    }
}
