//! The status page's markup (maud: checked at compile time, every splice
//! HTML-escaped, so probe details, alert labels and reasons, which can carry
//! text from outside, render as text).
//!
//! The page reads without JavaScript. Three regions carry `data-live`: the
//! refresh script (`/ui/refresh.js`) replaces them with fresh ones every few
//! seconds; the action forms sit outside them, so a refresh never wipes what
//! an operator is typing.

mod forms;
mod state;
mod tables;

use maud::{DOCTYPE, Markup, html};

use super::access::Viewer;
use super::model::{Notice, clock};
use crate::config::Config;
use crate::server::control::StatusDoc;
use crate::server::wire::EventItem;

pub use forms::Draft;

/// Everything one rendering of the page reads.
pub struct PageData<'a> {
    pub doc: &'a StatusDoc,
    pub config: &'a Config,
    /// Recent decisions and Talkdesk calls, newest first, or why they could
    /// not be read.
    pub timeline: &'a Result<Vec<EventItem>, String>,
    pub viewer: &'a Viewer,
    /// The outcome of the action this page answers, if any.
    pub notice: Option<&'a Notice>,
    /// What the operator typed, kept when an action was refused.
    pub draft: &'a Draft,
}

/// The whole status page.
pub fn page(p: &PageData<'_>) -> Markup {
    document(
        "Fallback status · continuity-agent",
        html! {
            (top_bar(p))
            main {
                @if let Some(n) = p.notice { (notice(n, p.doc.engine.now)) }
                (state::live_state(p))
                (state::live_summary(p))
                (forms::actions(p))
                (tables::live_details(p))
            }
        },
    )
}

/// The sign-in page: `message` says why it is shown; `hint` warns when the
/// browser will not keep the session cookie (plain http to a remote host).
pub fn login_page(message: &str, hint: Option<&str>) -> Markup {
    document(
        "Sign in · continuity-agent",
        html! {
            header.top { div.brand { "continuity-agent" } }
            main.narrow {
                section.card {
                    h1 { "Sign in" }
                    p { (message) }
                    @if let Some(h) = hint { p.notice-line.alert { (h) } }
                    (forms::login_form())
                }
            }
        },
    )
}

/// A page that only says something went wrong (the agent is shutting down).
pub fn error_page(title: &str, detail: &str) -> Markup {
    document(
        "Unavailable · continuity-agent",
        html! {
            header.top { div.brand { "continuity-agent" } }
            main.narrow {
                section.card {
                    h1 { (title) }
                    p { (detail) }
                    p { a href="/" { "Try again" } }
                }
            }
        },
    )
}

fn document(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="same-origin";
                title { (title) }
                link rel="stylesheet" href="/ui/page.css";
                script src="/ui/refresh.js" defer {}
            }
            body { (body) }
        }
    }
}

fn top_bar(p: &PageData<'_>) -> Markup {
    let d = p.doc;
    let role = match (d.leader, d.leader_id.as_deref()) {
        (true, _) => format!("leader, epoch {}", d.epoch),
        (false, Some(l)) => format!("follower of {l}, epoch {}", d.epoch),
        (false, None) => "follower, leader unknown".to_string(),
    };
    html! {
        header.top {
            div.brand { "continuity-agent" }
            div.meta {
                span { (d.instance_id) " · " (role) " · v" (d.version) }
                span id="live-clock" data-live="1" {
                    "as of " time datetime=(d.engine.now.to_rfc3339()) { (clock(d.engine.now, d.engine.now)) }
                }
                span id="refresh-state" { noscript { " · reload to update" } }
            }
            div.who { (forms::who(p)) }
        }
    }
}

/// The outcome of the action this page answers. It stays until the page is
/// loaded again (the refresh leaves it), so it carries its time.
fn notice(n: &Notice, at: crate::domain::Timestamp) -> Markup {
    html! {
        section class={"notice " (n.tone.class())} role="status" {
            strong { (n.title) } " " span.at { "(" (clock(at, at)) ")" }
            @for line in &n.lines { p { (line) } }
        }
    }
}
