//! The detail tables: probes, rules, alerts, and the timeline of recent
//! decisions and Talkdesk calls.

use maud::{Markup, html};

use super::PageData;
use super::state::when;
use crate::domain::ProbeHealth;
use crate::engine::RulePhase;

pub(super) fn live_details(p: &PageData<'_>) -> Markup {
    html! {
        div id="live-details" data-live="1" {
            (probes(p))
            (rules(p))
            (alerts(p))
            (timeline(p))
        }
    }
}

fn health_class(h: ProbeHealth) -> &'static str {
    match h {
        ProbeHealth::Up => "good",
        ProbeHealth::Down => "bad",
        ProbeHealth::Unknown => "muted",
    }
}

fn probes(p: &PageData<'_>) -> Markup {
    let e = &p.doc.engine;
    html! {
        section.card.wide {
            h2 { "Probes" }
            @if e.probes.is_empty() {
                p.muted { "No probes are configured." }
            } @else {
                div.scroll {
                    table.data {
                        thead { tr {
                            th { "Probe" } th { "State" } th { "Last result" } th.num { "Latency" }
                            th { "Checked" } th { "State since" }
                        } }
                        tbody {
                            @for pr in &e.probes {
                                tr {
                                    td { strong { (pr.id) } br; span.muted { (pr.kind) } }
                                    td {
                                        span class={"pill " (health_class(pr.health))} { (pr.health.to_string()) }
                                        @if pr.stale { br; span.muted { "restored, awaiting a fresh result" } }
                                        @else if pr.fast { br; span.muted {
                                            @if pr.consecutive_failures > 0 { "failing " (pr.consecutive_failures) "/" (pr.fall) }
                                            @else { "passing " (pr.consecutive_successes) "/" (pr.rise) }
                                        } }
                                    }
                                    td.detail { (pr.last_detail.as_deref().unwrap_or("-")) }
                                    td.num { @match pr.last_latency_ms { Some(ms) => { (ms) " ms" }, None => "-" } }
                                    td { @match pr.last_result_at { Some(t) => (when(t, e.now)), None => "never" } }
                                    td { @match pr.last_change { Some(t) => (when(t, e.now)), None => "-" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn phase_class(ph: RulePhase) -> &'static str {
    match ph {
        RulePhase::Inactive => "muted",
        RulePhase::Pending | RulePhase::Clearing => "warn",
        RulePhase::Firing => "bad",
    }
}

fn rules(p: &PageData<'_>) -> Markup {
    let e = &p.doc.engine;
    html! {
        section.card.wide {
            h2 { "Rules" }
            @if e.rules.is_empty() {
                p.muted { "No rules are configured." }
            } @else {
                div.scroll {
                    table.data {
                        thead { tr {
                            th { "Rule" } th { "State" } th { "Condition" } th { "Progress" }
                        } }
                        tbody {
                            @for r in &e.rules {
                                tr {
                                    td {
                                        strong { (r.name) } br;
                                        span.muted { "profile " (r.profile) " · priority " (r.priority) }
                                    }
                                    td {
                                        span class={"pill " (phase_class(r.state))} { (r.state.as_str()) }
                                        @if r.frozen { br; span.muted { "frozen (blind)" } }
                                        @if r.awaiting_fresh_results { br; span.muted { "awaiting fresh results" } }
                                        @if let Some(since) = r.since { br; span.muted { "since " (when(since, e.now)) } }
                                    }
                                    td {
                                        code { (r.when) } br;
                                        span.muted { "now " @if r.condition { "true" } @else { "false" } }
                                    }
                                    td {
                                        @for line in &r.progress { div { (line) } }
                                        @if let Some(t) = r.fires_at { div { "fires " (when(t, e.now)) " if it holds" } }
                                        @if let Some(t) = r.clears_at { div { "lets go " (when(t, e.now)) " if it stays clear" } }
                                        @if r.progress.is_empty() && r.fires_at.is_none() && r.clears_at.is_none() { span.muted { "-" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn alerts(p: &PageData<'_>) -> Markup {
    let e = &p.doc.engine;
    html! {
        section.card.wide {
            h2 { "Active alerts" }
            @if e.alerts.is_empty() {
                p.muted { "No alert is active." }
            } @else {
                div.scroll {
                    table.data {
                        thead { tr {
                            th { "Source" } th { "Alert" } th { "Since" } th { "Last seen" } th { "Expires" }
                        } }
                        tbody {
                            @for a in &e.alerts {
                                tr {
                                    td { (a.source) }
                                    td {
                                        strong { (a.labels.get("alertname").map_or(a.id.as_str(), String::as_str)) }
                                        @if let Some(s) = &a.summary { br; (s) }
                                        br;
                                        span.muted.labels {
                                            @for (k, v) in &a.labels { span.label { (k) "=" (v) } " " }
                                        }
                                    }
                                    td { (when(a.first_seen, e.now)) }
                                    td { (when(a.last_seen, e.now)) }
                                    td { (when(a.expires, e.now)) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn timeline(p: &PageData<'_>) -> Markup {
    let now = p.doc.engine.now;
    html! {
        section.card.wide {
            h2 { "Timeline" span.muted.h-note { "recent decisions, probe changes, alerts, overrides and Talkdesk calls" } }
            @match p.timeline {
                Err(why) => p.bad { "The audit log cannot be read now: " (why) },
                Ok(events) if events.is_empty() => p.muted { "Nothing recent." },
                Ok(events) => {
                    div.scroll {
                        table.data.timeline {
                            thead { tr { th { "When" } th { "What" } th { "Event" } } }
                            tbody {
                                @for ev in events {
                                    tr {
                                        td.nowrap { (when(ev.record.at, now)) }
                                        td { span class={"kind " (ev.record.kind.as_str())} { (ev.record.kind.as_str()) } }
                                        td.detail { (ev.record.message) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.muted.small {
                "The whole audit log: " code { "continuity-agent events" } " or " code { "GET /v1/events" } "."
            }
        }
    }
}
