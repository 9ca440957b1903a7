//! Status page probe: is a vendor (Talkdesk, the carrier, the CRM) reporting
//! an outage on its public status page?
//!
//! Formats: Atlassian Statuspage v2 (`summary.json`, `status.json`,
//! `components.json`), incident.io (widget `/api/v1/summary` and the
//! `/proxy/<host>` shape), Instatus (`summary.json`). The format is detected
//! from the body unless `format` says it.
//!
//! - With `components`, each named component (case-insensitive) is judged;
//!   a group also takes its children into account (the worst wins). A name
//!   the page does not list is a failure whose detail lists the names it
//!   does, so a typo cannot silently read as "operational". Exception: the
//!   incident.io widget summary lists only *affected* components, so there an
//!   absent name is operational.
//! - Without `components`, the page-wide indicator is used: `none` ok,
//!   `minor` ~ degraded, `major` ~ partial outage, `critical` ~ major outage,
//!   `maintenance` ok (incident.io: the worst ongoing impact; Instatus: the
//!   page status and its incidents' impact; a components-only document: its
//!   worst component).
//! - The probe fails when the level reaches `down_at` (`degraded_performance`
//!   < `partial_outage` < `major_outage`, default `major_outage`). Unknown
//!   status values count as degraded; maintenance is not an outage.

mod atlassian;
pub mod config;
mod incidentio;
mod instatus;
pub mod model;

#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Client;

use crate::domain::ProbeOutcome;

pub use config::{DEFAULT_DOWN_AT, StatusPageConfig, StatusPageSettings};
pub use model::{ComponentStatus, Format, Level, Page};

use super::http::{client, fetch, with_timeout};
use super::{Probe, ProbeBuildError};

pub struct StatusPageProbe {
    id: String,
    url: String,
    client: Client,
    format: Option<Format>,
    components: Vec<String>,
    down_at: Level,
    timeout: Duration,
}

impl StatusPageProbe {
    /// The probe a validated `[[probes]]` entry describes. Fails only if
    /// the HTTP client cannot be built (TLS initialisation).
    pub fn new(
        id: impl Into<String>,
        s: &StatusPageSettings,
        timeout: Duration,
    ) -> Result<StatusPageProbe, ProbeBuildError> {
        let id = id.into();
        Ok(StatusPageProbe {
            client: client(&id, &s.endpoint, timeout)?,
            id,
            url: s.endpoint.url.clone(),
            format: s.format,
            components: s.components.clone(),
            down_at: s.down_at,
            timeout,
        })
    }

    async fn attempt(&self) -> ProbeOutcome {
        let got = match fetch::get_ok(&self.client, &self.url, |s| {
            format!("status page answered {s}")
        })
        .await
        {
            Ok(g) => g,
            Err(failure) => return failure,
        };
        let latency = Some(got.latency);
        let page = serde_json::from_slice(&got.body)
            .map_err(|e| format!("status page body is not JSON: {e}"))
            .and_then(|v| Page::from_json(v, self.format));
        match page {
            Ok(page) => {
                let (ok, detail) = evaluate(&page, &self.components, self.down_at);
                if ok {
                    ProbeOutcome::success(detail, latency)
                } else {
                    ProbeOutcome::failure(detail, latency)
                }
            }
            Err(e) => ProbeOutcome::failure(e, latency),
        }
    }
}

/// Judge a page: `(success, detail)`. Pure, so every rule above is tested
/// without a server.
pub fn evaluate(page: &Page, watch: &[String], down_at: Level) -> (bool, String) {
    let verdict = |level: Level, text: String| {
        if level >= down_at {
            (false, format!("{text}: at or above {}", down_at.as_str()))
        } else {
            (true, text)
        }
    };
    if watch.is_empty() {
        return match &page.overall {
            Some(o) => verdict(o.level, o.text.clone()),
            None => {
                let worst = page.components.iter().max_by_key(|c| c.status.level());
                match worst {
                    Some(c) if c.status.level() > Level::Ok => verdict(
                        c.status.level(),
                        format!("worst component {}: {}", c.name, c.status),
                    ),
                    _ => (true, "all components operational".into()),
                }
            }
        };
    }
    let mut worst = Level::Ok;
    let mut parts = Vec::new();
    for name in watch {
        let want = name.trim();
        // The named components plus, for groups, their children.
        let members: Vec<_> = page
            .components
            .iter()
            .filter(|c| {
                c.name.eq_ignore_ascii_case(want)
                    || c.group
                        .as_deref()
                        .is_some_and(|g| g.eq_ignore_ascii_case(want))
            })
            .collect();
        let Some(w) = members.iter().max_by_key(|c| c.status.level()) else {
            if page.complete {
                return (false, unknown_component(page, want));
            }
            parts.push(format!("{want}: not affected"));
            continue;
        };
        worst = worst.max(w.status.level());
        // Spell the name as the page does.
        let shown = members
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(want))
            .map(|c| c.name.as_str())
            .or_else(|| members.iter().find_map(|c| c.group.as_deref()))
            .unwrap_or(want);
        if w.name.eq_ignore_ascii_case(want) {
            parts.push(format!("{shown}: {}", w.status));
        } else {
            parts.push(format!("{shown}: {} ({})", w.status, w.name));
        }
    }
    verdict(worst, parts.join(", "))
}

fn unknown_component(page: &Page, name: &str) -> String {
    if page.components.is_empty() {
        return format!(
            "unknown component \"{name}\": the page lists no components; remove `components` to use the page status"
        );
    }
    let mut names: Vec<&str> = page.components.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let shown = names.len().min(30);
    let more = if names.len() > shown {
        format!(" and {} more", names.len() - shown)
    } else {
        String::new()
    };
    format!(
        "unknown component \"{name}\"; available: {}{more}",
        names[..shown].join(", ")
    )
}

impl Probe for StatusPageProbe {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "statuspage"
    }

    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(with_timeout(self.timeout, self.attempt()))
    }
}
