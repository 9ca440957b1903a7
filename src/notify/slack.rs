//! Slack incoming webhook: a Block Kit message (a header, the details in
//! `mrkdwn`, a context line with the time, the instance and the status page),
//! and `text` for the notification itself (Slack shows it where blocks
//! cannot be shown). Slack answers `200 ok`.
//!
//! Text from outside (alert labels, probe details) is escaped (`&`, `<`,
//! `>`), so it can neither mention `@channel` nor forge a link.

use serde_json::{Value, json};

use super::message::{DRY_RUN_NOTE, Message, truncate};

/// Slack's limits: header text 150 characters, section text 3000.
const HEADER_MAX: usize = 150;
const SECTION_MAX: usize = 3000;

pub fn payload(m: &Message) -> Value {
    let mut details = format!("*What changed:* {}", escape(&m.changed));
    if !m.why.is_empty() {
        details.push_str("\n*Why:*");
        for line in &m.why {
            details.push_str("\n• ");
            details.push_str(&escape(line));
        }
    }
    details.push_str(&format!("\n*Callers now get:* {}", escape(&m.callers)));
    if m.dry_run {
        details.push_str(&format!("\n*{}*", capitalized(DRY_RUN_NOTE)));
    }
    let mut context = format!("{} · {}", m.at, escape(&m.instance));
    if let Some(account) = &m.account {
        context.push_str(&format!(" · account {}", escape(account)));
    }
    if let Some(link) = &m.link {
        context.push_str(&format!(" · <{}|Status page>", escape(link)));
    }
    json!({
        "text": escape(&m.title),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&m.title, HEADER_MAX), "emoji": false}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&details, SECTION_MAX)}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    })
}

/// Slack's three control characters in `mrkdwn` text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::{activation, context};

    #[test]
    fn slack_gets_a_header_the_details_and_a_context_line() {
        let m = Message::new(&activation(), &context(), "id-1".into());
        let want = json!({
            "text": "Fallback ON: backup",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Fallback ON: backup", "emoji": false}},
                {"type": "section", "text": {"type": "mrkdwn", "text":
                    "*What changed:* The fallback was switched ON with profile backup (cause: rule).\n\
                     *Why:*\n• trunks-down: 2 of 2 probes matching \"trunk-*\" down\n\
                     *Callers now get:* +14155550100 forwarded to +14155559999; every other number forwarded to +14155558888; others hear (en-US): \"We are sorry\""}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text":
                    "2025-11-30T22:00:00.000Z · replica-a · account acme · <https://continuity.example.net/|Status page>"}]},
            ],
        });
        assert_eq!(payload(&m), want);
    }

    #[test]
    fn outside_text_cannot_mention_or_link_and_dry_run_is_said() {
        let mut cx = context();
        cx.dry_run = true;
        cx.public_url = None;
        let mut m = Message::new(&activation(), &cx, String::new());
        m.why = vec!["alert says <!channel> & <https://evil|click>".into()];
        let p = payload(&m);
        let text = p["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            text.contains("alert says &lt;!channel&gt; &amp; &lt;https://evil|click&gt;"),
            "{text}"
        );
        assert!(
            text.ends_with("\n*Dry run: Talkdesk not changed*"),
            "{text}"
        );
        let context = p["blocks"][2]["elements"][0]["text"].as_str().unwrap();
        assert!(
            !context.contains("Status page"),
            "no link without public_url: {context}"
        );
    }
}
