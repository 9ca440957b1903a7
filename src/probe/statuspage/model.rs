//! The normalized status page ([`Page`]) every format converts into, and
//! the status values they share. The wire types live next to their
//! conversion: `atlassian.rs`, `incidentio.rs`, `instatus.rs`. Every enum has a `#[serde(other)] Unknown`
//! variant: vendors add values (Atlassian's own samples use `"high"`), and an
//! unknown value must degrade, never break, the probe.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::{atlassian, incidentio, instatus};

/// How bad a component (or the page) is, in the order `down_at` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Ok,
    Degraded,
    Partial,
    Major,
}

impl Level {
    /// The `down_at` spelling of a level.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "operational",
            Level::Degraded => "degraded_performance",
            Level::Partial => "partial_outage",
            Level::Major => "major_outage",
        }
    }

    /// Parse `down_at`: exactly one of the three documented spellings.
    pub fn parse_down_at(s: &str) -> Result<Level, String> {
        match s {
            "degraded_performance" => Ok(Level::Degraded),
            "partial_outage" => Ok(Level::Partial),
            "major_outage" => Ok(Level::Major),
            _ => Err(format!(
                "{s:?}: use one of degraded_performance, partial_outage, major_outage"
            )),
        }
    }
}

/// A component status in any supported format (Atlassian and incident.io
/// use snake_case, Instatus upper case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    #[serde(alias = "OPERATIONAL")]
    Operational,
    #[serde(alias = "UNDERMAINTENANCE")]
    UnderMaintenance,
    #[serde(alias = "DEGRADEDPERFORMANCE")]
    DegradedPerformance,
    #[serde(alias = "PARTIALOUTAGE", alias = "MINOROUTAGE")]
    PartialOutage,
    /// incident.io says `full_outage`.
    #[serde(alias = "full_outage", alias = "MAJOROUTAGE")]
    MajorOutage,
    #[serde(other)]
    Unknown,
}

impl ComponentStatus {
    /// Maintenance is planned and announced: not an outage. Unknown values
    /// count as degraded (something is off, but we cannot say how much).
    pub fn level(self) -> Level {
        match self {
            ComponentStatus::Operational | ComponentStatus::UnderMaintenance => Level::Ok,
            ComponentStatus::DegradedPerformance | ComponentStatus::Unknown => Level::Degraded,
            ComponentStatus::PartialOutage => Level::Partial,
            ComponentStatus::MajorOutage => Level::Major,
        }
    }
}

impl fmt::Display for ComponentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ComponentStatus::Operational => "operational",
            ComponentStatus::UnderMaintenance => "under_maintenance",
            ComponentStatus::DegradedPerformance => "degraded_performance",
            ComponentStatus::PartialOutage => "partial_outage",
            ComponentStatus::MajorOutage => "major_outage",
            ComponentStatus::Unknown => "unknown status (counted as degraded)",
        })
    }
}

/// The source formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Atlassian Statuspage v2: `summary.json`, `status.json`, `components.json`.
    Atlassian,
    /// incident.io widget API: `/api/v1/summary`.
    IncidentIo,
    /// incident.io `/proxy/<host>` shape: `{"summary": {...}}`.
    IncidentIoProxy,
    /// Instatus `summary.json`.
    Instatus,
}

impl Format {
    /// Parse the `format` key: exactly one of the documented names (absent
    /// means "detect from the body").
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "statuspage" => Ok(Format::Atlassian),
            // Both incident.io shapes are told apart from the body.
            "incidentio" => Ok(Format::IncidentIo),
            "instatus" => Ok(Format::Instatus),
            _ => Err(format!(
                "{s:?}: use one of statuspage, incidentio, instatus (or omit it to detect)"
            )),
        }
    }

    /// Guess the format from the document's shape.
    pub fn detect(v: &Value) -> Option<Format> {
        let has = |k: &str| v.get(k).is_some();
        if v.get("summary").is_some_and(Value::is_object) {
            Some(Format::IncidentIoProxy)
        } else if has("ongoing_incidents") || has("in_progress_maintenances") || has("page_title") {
            Some(Format::IncidentIo)
        } else if has("activeIncidents")
            || has("activeMaintenances")
            || v.pointer("/page/status").is_some_and(Value::is_string)
        {
            Some(Format::Instatus)
        } else if v.pointer("/status/indicator").is_some()
            || v.get("components").is_some_and(Value::is_array)
        {
            Some(Format::Atlassian)
        } else {
            None
        }
    }
}

/// The page-wide verdict when the format has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overall {
    pub level: Level,
    /// `indicator major (Partial System Outage)`, `page UP`, ...
    pub text: String,
}

/// One component, with the name of the group it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub status: ComponentStatus,
    pub group: Option<String>,
}

/// A status page in one shape, whatever it was on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub format: Format,
    pub overall: Option<Overall>,
    pub components: Vec<Component>,
    /// `false` when the format lists only affected components (incident.io
    /// widget summary): an absent name is then operational, not unknown.
    pub complete: bool,
}

impl Page {
    /// Normalize a document. `format` is the configured one (`None` = detect).
    pub fn from_json(v: Value, format: Option<Format>) -> Result<Page, String> {
        let format = match (format, Format::detect(&v)) {
            // "incidentio" covers both incident.io shapes.
            (Some(Format::IncidentIo), Some(Format::IncidentIoProxy)) => Format::IncidentIoProxy,
            (Some(f), _) => f,
            (None, Some(f)) => f,
            (None, None) => {
                return Err(
                    "unrecognized status page JSON (expected Atlassian Statuspage, \
                            incident.io or Instatus); set `format`"
                        .into(),
                );
            }
        };
        let bad = |e: serde_json::Error| format!("not a valid {format:?} document: {e}");
        Ok(match format {
            Format::Atlassian => atlassian::page(serde_json::from_value(v).map_err(bad)?),
            Format::IncidentIo => incidentio::widget_page(serde_json::from_value(v).map_err(bad)?),
            Format::IncidentIoProxy => {
                incidentio::proxy_page(serde_json::from_value(v).map_err(bad)?)
            }
            Format::Instatus => instatus::page(serde_json::from_value(v).map_err(bad)?),
        })
    }
}
