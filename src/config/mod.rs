//! Configuration: a TOML file, then `CONTINUITY_AGENT_<SECTION>__<KEY>`
//! environment variables, parsed once and validated as a whole.
//!
//! Loading never stops at the first problem: every section, every probe and
//! every rule is deserialized on its own, then validated, and all errors are
//! returned together, each naming the file (or environment variable), the key
//! path and the reason. Secrets given as `*_file` paths are read here, once,
//! into `secrecy` types.

mod error;
mod load;
pub mod schema;
pub mod types;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub use error::{ConfigErrors, ConfigIssue};
pub use schema::RawConfig;
pub use types::{ByteSize, Dur};

use crate::domain::Profile;
use crate::engine::spec::{DrillSpec, EngineSpec, ProbeSpec, RuleSpec};
use crate::probe::ProbeSettings;

/// The account of a configuration without `[[accounts]]`.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "CONTINUITY_AGENT_";
/// Separator between section and key in environment variable names.
pub const ENV_SPLIT: &str = "__";
/// Where `run` and `check-config` look when `-c` is not given.
pub const DEFAULT_PATH: &str = "config/continuity-agent.toml";

/// A loaded and validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it came from (file path), for messages.
    pub origin: String,
    /// The file it was loaded from, which a reload reads again; `None` for a
    /// document loaded from a string (tests, the demo).
    pub path: Option<std::path::PathBuf>,
    /// The sections as written, with `*_file` secrets read into their inline fields.
    pub raw: RawConfig,
    /// Validated profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// Probe hysteresis parameters (the engine's view), in file order.
    /// Probes are shared by every account, so every account's view
    /// ([`Config::for_account`]) shares these lists rather than copying
    /// them: at 10,000 probes a copy was 15 MB.
    pub probes: Arc<[ProbeSpec]>,
    /// Validated probes with every default resolved, in file order: what
    /// `run` builds and schedules (`probe::build_scheduled`).
    pub probe_settings: Arc<[ProbeSettings]>,
    /// Compiled rules, in file order.
    pub rules: Vec<RuleSpec>,
    /// `[[accounts]]`, compiled, in file order (`raw.accounts` holds them as
    /// written, in the same order). Empty for a file without them: its one
    /// account, [`DEFAULT_ACCOUNT`], is the top-level sections.
    ///
    /// With accounts, this value's own `raw.talkdesk`, `profiles`, `rules`,
    /// `raw.maintenance` and `raw.drills` are empty or defaults: nothing
    /// should decide or write from them. Each account is used through its
    /// view, [`Config::for_account`].
    pub accounts: Vec<Account>,
    /// Legal but suspicious settings.
    pub warnings: Vec<ConfigIssue>,
}

/// One `[[accounts]]` element, compiled.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: String,
    /// Its validated profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// Its compiled rules, in file order.
    pub rules: Vec<RuleSpec>,
}

/// How strict loading is about sections that only the daemon needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// `run` / `check-config`: Talkdesk credentials are required.
    Daemon,
    /// Rule scenarios and tests: Talkdesk credentials may be absent.
    RulesOnly,
}

/// Loads the file at `path`, then applies `CONTINUITY_AGENT_*` environment variables.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load::load_file(path, true, Strictness::Daemon)
}

/// Loads a TOML document without environment variables and without requiring
/// Talkdesk credentials (for `test-rules` scenarios and tests). `origin` names
/// the document in messages; relative `*_file` paths resolve against `base_dir`.
pub fn from_toml_str(src: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load::load_str(src, origin, Path::new("."), false, Strictness::RulesOnly)
}

/// Loads a TOML document with full (daemon) strictness, optionally applying
/// environment variables. Used by tests and the demo.
pub fn from_toml_str_strict(
    src: &str,
    origin: &str,
    base_dir: &Path,
    with_env: bool,
) -> Result<Config, ConfigErrors> {
    load::load_str(src, origin, base_dir, with_env, Strictness::Daemon)
}

impl Config {
    /// Who this process is (`cluster.instance_id`, default the host name):
    /// in status, the audit log and the header on every Talkdesk request.
    pub fn instance_id(&self) -> String {
        match &self.raw.cluster {
            Some(c) => c.instance_id.clone(),
            None => schema::defaults::instance_id(),
        }
    }

    /// The `[cluster]` settings, or their defaults for a lone replica.
    pub fn cluster(&self) -> schema::ClusterConfig {
        self.raw
            .cluster
            .clone()
            .unwrap_or_else(|| schema::ClusterConfig {
                instance_id: schema::defaults::instance_id(),
                lease_ttl: schema::defaults::LEASE_TTL,
                renew_deadline: schema::defaults::RENEW_DEADLINE,
            })
    }

    /// The Talkdesk accounts this configuration decides for, in file order.
    /// A configuration without `[[accounts]]` has one, [`DEFAULT_ACCOUNT`].
    pub fn account_ids(&self) -> Vec<String> {
        if self.accounts.is_empty() {
            vec![DEFAULT_ACCOUNT.to_string()]
        } else {
            self.accounts.iter().map(|a| a.id.clone()).collect()
        }
    }

    /// This configuration as one account sees it: that account's
    /// `talkdesk`, `profiles`, `rules`, `maintenance` and `drills` (raw and
    /// compiled) in place of the top-level ones, everything shared (probes,
    /// webhooks, engine, alerts, api, agent, store, cluster, notify) as is.
    /// `None` for an id that is not configured.
    ///
    /// A view keeps that one account in `accounts` and `raw.accounts`, so its
    /// `account_ids()` is `[id]` and `for_account(id)` gives it again. The
    /// view of [`DEFAULT_ACCOUNT`] in a file without `[[accounts]]` is the
    /// configuration itself.
    pub fn for_account(&self, id: &str) -> Option<Config> {
        if self.accounts.is_empty() {
            return (id == DEFAULT_ACCOUNT).then(|| self.clone());
        }
        let compiled = self.accounts.iter().find(|a| a.id == id)?;
        let raw = self.raw.accounts.iter().find(|a| a.id == id)?;
        // Built field by field rather than `self.clone()` then overwritten:
        // the clone would copy every other account's sections too, and a
        // daemon takes one view per account, so starting N accounts would
        // copy N x N sections (15-25 s at 1,000 accounts). No `..` either,
        // so a new field must be placed here on purpose.
        let shared = &self.raw;
        Some(Config {
            origin: self.origin.clone(),
            path: self.path.clone(),
            raw: RawConfig {
                agent: shared.agent.clone(),
                store: shared.store.clone(),
                talkdesk: raw.talkdesk.clone(),
                profiles: raw.profiles.clone(),
                probes: shared.probes.clone(),
                rules: raw.rules.clone(),
                engine: shared.engine.clone(),
                alerts: shared.alerts.clone(),
                maintenance: raw.maintenance.clone(),
                drills: raw.drills.clone(),
                webhooks: shared.webhooks.clone(),
                api: shared.api.clone(),
                cluster: shared.cluster.clone(),
                notify: shared.notify.clone(),
                accounts: vec![raw.clone()],
            },
            profiles: compiled.profiles.clone(),
            probes: self.probes.clone(),
            probe_settings: self.probe_settings.clone(),
            rules: compiled.rules.clone(),
            accounts: vec![compiled.clone()],
            warnings: self.warnings.clone(),
        })
    }

    /// The view of account `id`, or of the only account when `id` is `None`:
    /// what a command that acts on one account (break-glass, a rule
    /// scenario) runs with. The error names the accounts to choose from.
    pub fn account_view(&self, id: Option<&str>) -> Result<Config, String> {
        let ids = self.account_ids();
        let id = match (id, ids.as_slice()) {
            (Some(id), _) => id,
            (None, [only]) => only.as_str(),
            (None, _) => {
                return Err(format!(
                    "several accounts are configured ({}): name one",
                    ids.join(", ")
                ));
            }
        };
        self.for_account(id).ok_or_else(|| {
            format!(
                "no account {id:?} is configured (accounts: {})",
                ids.join(", ")
            )
        })
    }

    /// The engine's view of this configuration.
    pub fn engine_spec(&self) -> EngineSpec {
        EngineSpec {
            probes: self.probes.clone(),
            rules: self.rules.clone(),
            profiles: self.profiles.keys().cloned().collect(),
            drills: self
                .raw
                .drills
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        DrillSpec {
                            name: d.name.clone(),
                            profile: d.profile.clone(),
                            duration: d.duration.get(),
                        },
                    )
                })
                .collect(),
            flap_max: self.raw.engine.flap_max,
            flap_window: self.raw.engine.flap_window.get(),
            alerts_ttl: self.raw.alerts.ttl.get(),
            alerts_max_active: self.raw.alerts.max_active,
            alert_ttls: self
                .raw
                .webhooks
                .sources()
                .into_iter()
                .map(|(source, c)| (source.to_string(), self.alert_ttl(source, c.ttl)))
                .collect(),
            self_check: !self.raw.engine.self_check.is_empty(),
            self_check_wait: crate::probe::selfcheck::VERDICT_WITHIN,
        }
    }

    /// The effective TTL of alerts from `source` (see `webhooks.<source>.ttl`).
    pub fn alert_ttl(&self, source: &str, explicit: Option<Dur>) -> std::time::Duration {
        match explicit {
            Some(t) => t.get(),
            None if schema::defaults::RESENDING_SOURCES.contains(&source) => {
                self.raw.alerts.ttl.get()
            }
            None => schema::defaults::CHANGE_ONLY_ALERT_TTL.get(),
        }
    }

    /// A short human summary for `check-config`: the shared sections, and
    /// each account's Talkdesk account, rules, profiles, windows and drills.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let raw = &self.raw;
        let mut s = String::new();
        let _ = writeln!(s, "{}: configuration is valid", self.origin);
        let probes: Vec<String> = raw
            .probes
            .iter()
            .map(|p| format!("{} ({})", p.common.id, p.kind.name()))
            .collect();
        let _ = writeln!(s, "  probes ({}): {}", probes.len(), none_if_empty(&probes));
        if self.accounts.is_empty() {
            self.account_summary(&mut s, "  ");
        } else {
            let ids = self.account_ids();
            let _ = writeln!(s, "  accounts ({}): {}", ids.len(), ids.join(", "));
            for view in ids.iter().filter_map(|id| self.for_account(id)) {
                let td = &view.raw.talkdesk;
                let _ = writeln!(
                    s,
                    "  account {}: talkdesk account {}, region {}, on_drift {}, drift_override_ttl {}",
                    view.accounts[0].id,
                    td.account
                        .as_deref()
                        .or(td.token_url.as_deref())
                        .unwrap_or("none"),
                    td.region,
                    td.on_drift.as_str(),
                    td.drift_override_ttl,
                );
                view.account_summary(&mut s, "    ");
            }
        }
        let sources: Vec<String> = raw
            .webhooks
            .sources()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        let _ = writeln!(
            s,
            "  webhook sources ({}): {}",
            sources.len(),
            none_if_empty(&sources)
        );
        let store = match (&raw.store.url, &raw.cluster) {
            (_, Some(c)) => format!(
                "postgres, replica {} (lease_ttl {}, renew_deadline {})",
                c.instance_id, c.lease_ttl, c.renew_deadline
            ),
            (url, None) if url.starts_with("postgres") => {
                "postgres (shared database; add [cluster] to run several replicas)".to_string()
            }
            _ => "sqlite (embedded, one replica)".to_string(),
        };
        let talkdesk = if self.accounts.is_empty() {
            format!(
                "talkdesk: region {}, on_drift {}, drift_override_ttl {}, ",
                raw.talkdesk.region,
                raw.talkdesk.on_drift.as_str(),
                raw.talkdesk.drift_override_ttl,
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {talkdesk}dry_run {}; store: {}; api tokens: {}",
            raw.agent.dry_run,
            store,
            raw.api.tokens.len()
        );
        let targets: Vec<String> = raw
            .notify
            .iter()
            .map(|n| format!("{} ({})", n.name(), n.kind))
            .collect();
        let _ = writeln!(
            s,
            "  notify ({}): {}",
            targets.len(),
            none_if_empty(&targets)
        );
        let _ = writeln!(s, "  warnings: {}", self.warnings.len());
        for w in &self.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
        s
    }

    /// The summary lines of this configuration's one account (its rules,
    /// profiles, maintenance windows and drills).
    fn account_summary(&self, s: &mut String, indent: &str) {
        use std::fmt::Write;
        let rules: Vec<String> = self
            .rules
            .iter()
            .map(|r| format!("{} -> {} (priority {})", r.name, r.profile, r.priority))
            .collect();
        let _ = writeln!(
            s,
            "{indent}rules ({}): {}",
            rules.len(),
            none_if_empty(&rules)
        );
        let profiles: Vec<String> = self.profiles.keys().cloned().collect();
        let _ = writeln!(
            s,
            "{indent}profiles ({}): {}",
            profiles.len(),
            none_if_empty(&profiles)
        );
        let windows: Vec<String> = self
            .raw
            .maintenance
            .iter()
            .map(|m| m.name.clone())
            .collect();
        let drills: Vec<String> = self.raw.drills.iter().map(|d| d.name.clone()).collect();
        let _ = writeln!(
            s,
            "{indent}maintenance windows: {}; drills: {}",
            none_if_empty(&windows),
            none_if_empty(&drills)
        );
    }
}

fn none_if_empty(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}
