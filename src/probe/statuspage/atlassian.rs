//! Atlassian Statuspage v2: `summary.json`, `status.json` and
//! `components.json` share one shape (each has a subset of the fields).
//! Groups are components with `"group": true`; children point back with
//! `group_id`.

use std::collections::HashMap;

use serde::Deserialize;

use super::model::{Component, ComponentStatus, Format, Level, Overall, Page};

/// Atlassian `status.indicator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indicator {
    None,
    Minor,
    Major,
    Critical,
    /// Not documented but seen ("Service Under Maintenance").
    Maintenance,
    #[serde(other)]
    Unknown,
}

impl Indicator {
    pub fn level(self) -> Level {
        match self {
            Indicator::None | Indicator::Maintenance => Level::Ok,
            Indicator::Minor | Indicator::Unknown => Level::Degraded,
            Indicator::Major => Level::Partial,
            Indicator::Critical => Level::Major,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Indicator::None => "none",
            Indicator::Minor => "minor",
            Indicator::Major => "major",
            Indicator::Critical => "critical",
            Indicator::Maintenance => "maintenance",
            Indicator::Unknown => "unknown",
        }
    }
}

#[derive(Deserialize)]
pub(super) struct AtlPage {
    #[serde(default)]
    status: Option<AtlStatus>,
    #[serde(default)]
    components: Option<Vec<AtlComponent>>,
}

#[derive(Deserialize)]
struct AtlStatus {
    indicator: Indicator,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
struct AtlComponent {
    #[serde(default)]
    id: Option<String>,
    name: String,
    status: ComponentStatus,
    #[serde(default)]
    group_id: Option<String>,
}

pub(super) fn page(p: AtlPage) -> Page {
    let overall = p.status.map(|s| Overall {
        level: s.indicator.level(),
        text: match s.description {
            Some(d) => format!("indicator {} ({d})", s.indicator.as_str()),
            None => format!("indicator {}", s.indicator.as_str()),
        },
    });
    let comps = p.components.unwrap_or_default();
    // Children point at their group by id; groups are components too.
    let names: HashMap<String, String> = comps
        .iter()
        .filter_map(|c| Some((c.id.clone()?, c.name.clone())))
        .collect();
    let components = comps
        .iter()
        .map(|c| Component {
            name: c.name.clone(),
            status: c.status,
            group: c.group_id.as_ref().and_then(|g| names.get(g).cloned()),
        })
        .collect();
    Page {
        format: Format::Atlassian,
        overall,
        components,
        complete: true,
    }
}
