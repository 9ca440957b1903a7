//! Instatus `summary.json`: a page status (`UP`, `HASISSUES`,
//! `UNDERMAINTENANCE`), active incidents with an impact, and optionally the
//! components with their children.

use serde::Deserialize;

use super::model::{Component, ComponentStatus, Format, Level, Overall, Page};

#[derive(Deserialize)]
pub(super) struct InstatusSummary {
    page: InstatusPage,
    #[serde(default, rename = "activeIncidents")]
    active_incidents: Vec<InstatusIncident>,
    #[serde(default)]
    components: Vec<InstatusComponent>,
}

#[derive(Deserialize)]
struct InstatusPage {
    status: InstatusPageStatus,
}

#[derive(Clone, Copy, Deserialize)]
enum InstatusPageStatus {
    #[serde(rename = "UP")]
    Up,
    #[serde(rename = "HASISSUES")]
    HasIssues,
    #[serde(rename = "UNDERMAINTENANCE")]
    UnderMaintenance,
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
struct InstatusIncident {
    #[serde(default)]
    name: String,
    #[serde(default)]
    impact: Option<ComponentStatus>,
}

#[derive(Deserialize)]
struct InstatusComponent {
    name: String,
    status: ComponentStatus,
    #[serde(default)]
    children: Vec<InstatusComponent>,
}

pub(super) fn page(s: InstatusSummary) -> Page {
    let incidents_worst = s
        .active_incidents
        .iter()
        .map(|i| i.impact.unwrap_or(ComponentStatus::Unknown).level())
        .max();
    let (level, label) = match s.page.status {
        InstatusPageStatus::Up => (Level::Ok, "UP"),
        InstatusPageStatus::UnderMaintenance => (Level::Ok, "UNDERMAINTENANCE"),
        // "Has issues" without a readable impact is at least degraded.
        InstatusPageStatus::HasIssues => (
            incidents_worst
                .unwrap_or(Level::Degraded)
                .max(Level::Degraded),
            "HASISSUES",
        ),
        InstatusPageStatus::Unknown => (Level::Degraded, "unknown status"),
    };
    let names: Vec<&str> = s.active_incidents.iter().map(|i| i.name.as_str()).collect();
    let text = if names.is_empty() {
        format!("page {label}")
    } else {
        format!("page {label} ({})", names.join("; "))
    };
    let mut components = Vec::new();
    for c in &s.components {
        components.push(Component {
            name: c.name.clone(),
            status: c.status,
            group: None,
        });
        for child in &c.children {
            components.push(Component {
                name: child.name.clone(),
                status: child.status,
                group: Some(c.name.clone()),
            });
        }
    }
    Page {
        format: Format::Instatus,
        overall: Some(Overall { level, text }),
        components,
        // A page without a component list has no components to name: a
        // configured name is then unknown (and said so), never assumed fine.
        complete: true,
    }
}
