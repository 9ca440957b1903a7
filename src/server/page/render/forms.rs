//! The forms: sign in and out, and the operator's actions (override on with
//! a profile, off, clear, release the flap latch). Every action form carries
//! the session's CSRF token; the token itself is typed only into the sign-in
//! form and travels in its body, never in a URL.

use maud::{Markup, html};

use super::PageData;
use crate::server::page::access::Viewer;
use crate::server::page::session::SESSION_TTL;

/// What the operator typed into the override form, kept when an action is
/// refused so it need not be typed again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Draft {
    pub profile: Option<String>,
    pub ttl: Option<String>,
    pub reason: Option<String>,
}

/// A suggested override length: long enough to work an incident, short
/// enough that a forgotten override ends by itself.
const DEFAULT_TTL: &str = "30m";

pub(super) fn login_form() -> Markup {
    html! {
        form.login method="post" action="/ui/login" autocomplete="off" {
            label for="token" { "API token" }
            input id="token" type="password" name="token" required autocomplete="off" spellcheck="false";
            button type="submit" { "Sign in" }
            p.muted.small {
                "The token is sent once, in this form's body. The browser then keeps a session cookie for "
                (SESSION_TTL.as_secs() / 3600) " h (not the token), which ends when you sign out, when the agent restarts, or when the token is changed."
            }
        }
    }
}

/// Top right: who is signed in.
pub(super) fn who(p: &PageData<'_>) -> Markup {
    html! {
        @match p.viewer {
            Viewer::Session { token, csrf, .. } => {
                span { "signed in as " strong { (token.0) } }
                form.inline method="post" action="/ui/logout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button.link type="submit" { "Sign out" }
                }
            }
            Viewer::Bearer(token) => span { "token " strong { (token.0) } " (header)" },
            Viewer::Public => a href="#actions" { "Sign in" },
        }
    }
}

pub(super) fn actions(p: &PageData<'_>) -> Markup {
    html! {
        section.card.actions id="actions" {
            h2 { "Act" }
            @match p.viewer {
                Viewer::Session { can_act: true, csrf, .. } => (action_forms(p, csrf)),
                Viewer::Session { token, .. } => p.muted {
                    "Token " strong { (token.0) } " may read but not act: it lacks the override scope."
                },
                Viewer::Bearer(token) => {
                    p.muted { "Reading with token " strong { (token.0) } " from the Authorization header. Sign in with a token that has the override scope to act." }
                    (login_form())
                }
                Viewer::Public => {
                    p.muted { "Reading this page is public. Sign in with a token that has the override scope to act." }
                    (login_form())
                }
            }
        }
    }
}

fn action_forms(p: &PageData<'_>, csrf: &str) -> Markup {
    let d = p.draft;
    let chosen = d
        .profile
        .clone()
        .or_else(|| p.doc.desired.profile().map(str::to_string));
    let max = p.config.raw.api.override_max_ttl;
    html! {
        form.override method="post" action="/ui/override" {
            input type="hidden" name="csrf" value=(csrf);
            div.fields {
                label {
                    span { "Profile (for ON)" }
                    select name="profile" {
                        @for name in p.config.profiles.keys() {
                            option value=(name) selected[chosen.as_deref() == Some(name.as_str())] { (name) }
                        }
                    }
                }
                label {
                    span { "For (1m to " (short(max.get())) ")" }
                    input type="text" name="ttl" required value=(d.ttl.as_deref().unwrap_or(DEFAULT_TTL)) size="6" spellcheck="false";
                }
                label.grow {
                    span { "Reason (recorded in the audit log)" }
                    input type="text" name="reason" required maxlength="500" value=(d.reason.as_deref().unwrap_or(""));
                }
            }
            div.buttons {
                button.danger type="submit" name="state" value="active" { "Force fallback ON" }
                button type="submit" name="state" value="inactive" { "Force fallback OFF" }
            }
        }
        div.buttons.secondary {
            form.inline method="post" action="/ui/override/clear" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Clear override (back to the rules)" }
            }
            form.inline method="post" action="/ui/flap/release" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Release the flap latch" }
            }
        }
        p.muted.small { "Changes go through the same path as the API: recorded durably first, then applied by the agent that leads." }
    }
}

/// `24h`, `90m`, `45s`: how the form's limit reads (the ttl field takes the
/// same forms).
fn short(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{}h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
