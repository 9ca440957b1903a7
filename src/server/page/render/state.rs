//! The top of the page: the ON/OFF banner with the why, the banners of
//! conditions that change what the agent does, and the summary cards (what
//! callers get now, desired vs actual, the override).

use maud::{Markup, html};

use super::PageData;
use crate::domain::Timestamp;
use crate::server::page::model::{
    banners, callers_now, clock, desired_text, mode_text, reasons, relative,
};

/// `<time>` with the clock as text and the exact instant as its title.
pub(super) fn when(t: Timestamp, now: Timestamp) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) {
            (clock(t, now)) " (" (relative(t, now)) ")"
        }
    }
}

pub(super) fn live_state(p: &PageData<'_>) -> Markup {
    let d = p.doc;
    let e = &d.engine;
    let on = d.desired.is_active();
    let why = reasons(d);
    html! {
        section id="live-state" data-live="1" {
            div class={"state " (if on { "on" } else { "off" })} {
                div.state-main {
                    div.state-word { "Fallback " (if on { "ON" } else { "OFF" }) }
                    div.state-sub {
                        @if let Some(profile) = d.desired.profile() {
                            "profile " strong { (profile) } " · "
                        }
                        "mode: " (mode_text(d.mode))
                        @if let Some(since) = e.desired_since {
                            " · since " (when(since, e.now))
                        }
                    }
                    @if !d.converged { (not_converged(p)) }
                }
                div.why {
                    h2 { "Why" }
                    @if why.is_empty() {
                        p.muted { "No rule is firing and nothing overrides them." }
                    } @else {
                        ul { @for r in &why { li { (r) } } }
                    }
                }
            }
            @for b in banners(d) {
                div class={"banner " (b.tone.class())} {
                    strong { (b.title) } " " span { (b.text) }
                }
            }
        }
    }
}

/// Talkdesk does not have the decision yet: what it has, and why not.
fn not_converged(p: &PageData<'_>) -> Markup {
    let d = p.doc;
    let a = &d.actuator;
    let has = d.actual.activation();
    html! {
        div.state-warn {
            "Talkdesk has the fallback " strong { (has) } ": not applied yet"
            @if a.attempts > 0 { " · attempt " (a.attempts) " failed" }
            @if let Some(err) = &a.last_error { ": " (err.message) }
            @if a.blocked { " · not retrying" }
            @else if d.dry_run { " · dry run: not sent" }
            @else if !d.leader { " · this replica does not write" }
            @else { " · retrying" }
        }
    }
}

pub(super) fn live_summary(p: &PageData<'_>) -> Markup {
    html! {
        div.grid id="live-summary" data-live="1" {
            (callers(p))
            (talkdesk(p))
            (override_card(p))
        }
    }
}

fn callers(p: &PageData<'_>) -> Markup {
    let c = callers_now(p.doc, p.config);
    html! {
        section.card {
            h2 { "What callers get now" }
            p { (c.headline) }
            @if !c.items.is_empty() {
                ul.callers { @for item in &c.items { li { (item) } } }
            }
        }
    }
}

fn talkdesk(p: &PageData<'_>) -> Markup {
    let d = p.doc;
    let a = &d.actuator;
    let now = d.engine.now;
    let settings = d
        .actual
        .settings
        .as_ref()
        .map_or_else(|| "unknown".to_string(), |s| s.to_string());
    html! {
        section.card {
            h2 { "Talkdesk: desired vs actual" }
            table.kv {
                tr { th { "Desired" } td { (desired_text(&d.desired)) } }
                tr { th { "Talkdesk has" } td { "fallback " (d.actual.activation()) } }
                tr { th { "Settings" } td { (settings) } }
                tr {
                    th { "Converged" }
                    td class=(if d.converged { "good" } else { "bad" }) {
                        @if d.converged { "yes" } @else { "no" }
                        @if let (false, Some(since)) = (d.converged, a.since) {
                            ", differs since " (when(since, now))
                        }
                    }
                }
                @if !d.converged && a.attempts > 0 {
                    tr { th { "Attempts" } td { (a.attempts) " failed" @if a.blocked { ", not retrying" } @else { ", retrying with backoff" } } }
                }
                @if let (false, Some(err)) = (d.converged, &a.last_error) {
                    tr {
                        th { "Last error" }
                        td.bad {
                            (err.message)
                            @if let Some(status) = err.status { " (HTTP " (status) ")" }
                            " · " (when(err.at, now))
                        }
                    }
                }
                @if let Some(ok) = a.last_success_at {
                    tr { th { "Last match" } td { (when(ok, now)) } }
                }
            }
        }
    }
}

fn override_card(p: &PageData<'_>) -> Markup {
    let e = &p.doc.engine;
    html! {
        section.card {
            h2 { "Override" }
            @match &e.override_ {
                Some(ov) => {
                    table.kv {
                        tr { th { "Forces" } td { "fallback " (desired_text(&ov.desired)) } }
                        tr { th { "Until" } td { (when(ov.until, e.now)) } }
                        tr { th { "Set by" } td { (ov.actor) ", " (when(ov.set_at, e.now)) } }
                        tr { th { "Reason" } td { (ov.reason) } }
                    }
                }
                None => p.muted { "None: the rules decide." },
            }
        }
    }
}
