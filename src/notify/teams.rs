//! Microsoft Teams through a Workflows webhook ("Post to a channel when a
//! webhook request is received"): a `message` with one Adaptive Card 1.4
//! attachment. The card has the title (coloured by severity), what changed,
//! a fact set (why, what callers get, when, instance, account, dry run) and
//! a button to the status page. Teams answers `202 Accepted`.

use serde_json::{Value, json};

use super::message::{DRY_RUN_NOTE, Message, Severity, truncate};

/// Long texts are cut: a card has a size limit (about 28 KB).
const TEXT_MAX: usize = 2000;

pub fn payload(m: &Message) -> Value {
    let color = match m.severity {
        Severity::Critical => "Attention",
        Severity::Warning => "Warning",
        Severity::Resolved => "Good",
    };
    let mut facts = Vec::new();
    if !m.why.is_empty() {
        let why: Vec<String> = m.why.iter().map(|l| truncate(l, TEXT_MAX)).collect();
        facts.push(json!({"title": "Why", "value": why.join("\n\n")}));
    }
    facts.push(json!({"title": "Callers now get", "value": truncate(&m.callers, TEXT_MAX)}));
    facts.push(json!({"title": "When", "value": m.at.to_string()}));
    facts.push(json!({"title": "Instance", "value": m.instance}));
    if let Some(account) = &m.account {
        facts.push(json!({"title": "Account", "value": account}));
    }
    if m.dry_run {
        facts.push(json!({"title": "Dry run", "value": DRY_RUN_NOTE}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "msteams": {"width": "Full"},
        "body": [
            {"type": "TextBlock", "text": m.title, "weight": "Bolder", "size": "Large", "color": color, "wrap": true},
            {"type": "TextBlock", "text": truncate(&m.changed, TEXT_MAX), "wrap": true},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(link) = &m.link {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Status page", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::{context, deactivation};

    #[test]
    fn teams_gets_an_adaptive_card_in_a_message() {
        let m = Message::new(&deactivation(), &context(), "id-2".into());
        let want = json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "msteams": {"width": "Full"},
                    "body": [
                        {"type": "TextBlock", "text": "Fallback OFF", "weight": "Bolder", "size": "Large", "color": "Good", "wrap": true},
                        {"type": "TextBlock", "text": "The fallback was switched OFF; it was ON with profile backup since 2025-11-30T22:00:00.000Z (cause: rule).", "wrap": true},
                        {"type": "FactSet", "facts": [
                            {"title": "Why", "value": "rules: no rule is firing"},
                            {"title": "Callers now get", "value": "normal call handling (the fallback is off)"},
                            {"title": "When", "value": "2025-11-30T22:10:00.000Z"},
                            {"title": "Instance", "value": "replica-a"},
                            {"title": "Account", "value": "acme"},
                        ]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Status page", "url": "https://continuity.example.net/"}],
                },
            }],
        });
        assert_eq!(payload(&m), want);
    }

    #[test]
    fn a_dry_run_says_so_and_no_link_means_no_button() {
        let mut cx = context();
        cx.dry_run = true;
        cx.public_url = None;
        let p = payload(&Message::new(&deactivation(), &cx, String::new()));
        let card = &p["attachments"][0]["content"];
        assert!(card.get("actions").is_none(), "{card:#}");
        let facts = card["body"][2]["facts"].as_array().unwrap();
        assert_eq!(
            facts.last().unwrap(),
            &json!({"title": "Dry run", "value": "dry run: Talkdesk not changed"})
        );
    }
}
