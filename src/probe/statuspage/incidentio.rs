//! incident.io status pages: the widget API (`/api/v1/summary`, which lists
//! only affected components) and the `/proxy/<host>` shape (every component,
//! groups in `structure`, statuses in `affected_components`).

use std::collections::HashMap;

use serde::Deserialize;

use super::model::{Component, ComponentStatus, Format, Level, Overall, Page};

#[derive(Deserialize)]
pub(super) struct IioSummary {
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

#[derive(Deserialize)]
pub(super) struct IioProxy {
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

pub(super) fn widget_page(s: IioSummary) -> Page {
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

pub(super) fn proxy_page(p: IioProxy) -> Page {
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
