//! Wire types of the status page formats we read, and their conversion into
//! one normalized [`Page`]. Every enum has a `#[serde(other)] Unknown`
//! variant: vendors add values (Atlassian's own samples use `"high"`), and an
//! unknown value must degrade, never break, the probe.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;
use serde_json::Value;

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

    /// Parse `down_at`.
    pub fn parse_down_at(s: &str) -> Result<Level, String> {
        match s.trim() {
            "degraded_performance" => Ok(Level::Degraded),
            "partial_outage" => Ok(Level::Partial),
            "major_outage" => Ok(Level::Major),
            other => Err(format!(
                "\"{other}\" is not a level; use degraded_performance, partial_outage or major_outage"
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
    /// Parse the `format` key.
    pub fn parse(s: &str) -> Result<Option<Format>, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(None),
            "statuspage" | "atlassian" => Ok(Some(Format::Atlassian)),
            // Both incident.io shapes are told apart from the body.
            "incidentio" | "incident.io" => Ok(Some(Format::IncidentIo)),
            "instatus" => Ok(Some(Format::Instatus)),
            other => Err(format!(
                "\"{other}\" is not a known format; use statuspage, incidentio or instatus (or omit it to detect)"
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

// ---- Atlassian Statuspage v2 ----

#[derive(Deserialize)]
struct AtlPage {
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

// ---- incident.io widget API ----

#[derive(Deserialize)]
struct IioSummary {
    #[serde(default)]
    ongoing_incidents: Vec<IioIncident>,
    #[serde(default)]
    in_progress_maintenances: Vec<IioIncident>,
}

#[derive(Deserialize)]
struct IioIncident {
    #[serde(default)]
    name: String,
    #[serde(default)]
    current_worst_impact: Option<ComponentStatus>,
    #[serde(default)]
    affected_components: Vec<IioAffected>,
}

#[derive(Deserialize)]
struct IioAffected {
    name: String,
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    current_status: Option<ComponentStatus>,
}

// ---- incident.io /proxy/ shape ----

#[derive(Deserialize)]
struct IioProxy {
    summary: IioProxySummary,
}

#[derive(Deserialize)]
struct IioProxySummary {
    #[serde(default)]
    components: Vec<IioProxyComponent>,
    #[serde(default)]
    affected_components: Vec<IioProxyAffected>,
    #[serde(default)]
    structure: Option<IioStructure>,
}

#[derive(Deserialize)]
struct IioProxyComponent {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct IioProxyAffected {
    component_id: String,
    status: ComponentStatus,
}

#[derive(Deserialize)]
struct IioStructure {
    #[serde(default)]
    items: Vec<IioStructureItem>,
}

#[derive(Deserialize)]
struct IioStructureItem {
    #[serde(default)]
    group: Option<IioGroup>,
}

#[derive(Deserialize)]
struct IioGroup {
    name: String,
    #[serde(default)]
    components: Vec<IioGroupMember>,
}

#[derive(Deserialize)]
struct IioGroupMember {
    component_id: String,
}

// ---- Instatus ----

#[derive(Deserialize)]
struct InstatusSummary {
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
            Format::Atlassian => atlassian(serde_json::from_value(v).map_err(bad)?),
            Format::IncidentIo => incident_io(serde_json::from_value(v).map_err(bad)?),
            Format::IncidentIoProxy => incident_io_proxy(serde_json::from_value(v).map_err(bad)?),
            Format::Instatus => instatus(serde_json::from_value(v).map_err(bad)?),
        })
    }
}

fn atlassian(p: AtlPage) -> Page {
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

fn incident_io(s: IioSummary) -> Page {
    let mut components: Vec<Component> = Vec::new();
    let mut worst = Level::Ok;
    let mut names = Vec::new();
    for inc in &s.ongoing_incidents {
        let impact = inc
            .current_worst_impact
            .or_else(|| {
                inc.affected_components
                    .iter()
                    .filter_map(|c| c.current_status)
                    .max_by_key(|s| s.level())
            })
            .unwrap_or(ComponentStatus::Unknown);
        worst = worst.max(impact.level());
        names.push(inc.name.clone());
        for c in &inc.affected_components {
            push_worst(
                &mut components,
                Component {
                    name: c.name.clone(),
                    status: c.current_status.unwrap_or(impact),
                    group: c.group_name.clone(),
                },
            );
        }
    }
    for m in &s.in_progress_maintenances {
        for c in &m.affected_components {
            push_worst(
                &mut components,
                Component {
                    name: c.name.clone(),
                    status: ComponentStatus::UnderMaintenance,
                    group: c.group_name.clone(),
                },
            );
        }
    }
    let text = if names.is_empty() {
        "no ongoing incidents".to_string()
    } else {
        format!("ongoing: {}", names.join("; "))
    };
    Page {
        format: Format::IncidentIo,
        overall: Some(Overall { level: worst, text }),
        components,
        complete: false,
    }
}

/// Keep one entry per (name, group), the worst status wins.
fn push_worst(list: &mut Vec<Component>, c: Component) {
    match list
        .iter_mut()
        .find(|x| x.name == c.name && x.group == c.group)
    {
        Some(x) if c.status.level() > x.status.level() => x.status = c.status,
        Some(_) => {}
        None => list.push(c),
    }
}

fn incident_io_proxy(p: IioProxy) -> Page {
    let s = p.summary;
    let status: HashMap<&str, ComponentStatus> = s
        .affected_components
        .iter()
        .map(|a| (a.component_id.as_str(), a.status))
        .collect();
    let mut group_of: HashMap<&str, &str> = HashMap::new();
    let mut components = Vec::new();
    for g in s
        .structure
        .iter()
        .flat_map(|st| &st.items)
        .filter_map(|i| i.group.as_ref())
    {
        for m in &g.components {
            group_of.insert(m.component_id.as_str(), g.name.as_str());
        }
        // The group itself, so operators can name it.
        components.push(Component {
            name: g.name.clone(),
            status: ComponentStatus::Operational,
            group: None,
        });
    }
    for c in &s.components {
        components.push(Component {
            name: c.name.clone(),
            status: status
                .get(c.id.as_str())
                .copied()
                .unwrap_or(ComponentStatus::Operational),
            group: group_of.get(c.id.as_str()).map(|g| g.to_string()),
        });
    }
    Page {
        format: Format::IncidentIoProxy,
        overall: None,
        components,
        complete: true,
    }
}

fn instatus(s: InstatusSummary) -> Page {
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
