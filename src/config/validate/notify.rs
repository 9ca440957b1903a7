//! `[[notify]]`: notification targets (secret URLs).

use std::path::Path;

use secrecy::ExposeSecret;

use super::secrets::secret;
use super::shared::check_https_url;
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn notify(cx: &mut Cx, list: &mut [NotifyConfig], base: &Path) {
    if !list.is_empty() {
        cx.warn(
            "notify",
            "notifications (slack, teams, webhook) are not sent by this build yet; decisions are in the logs, metrics and audit log",
        );
    }
    for (i, n) in list.iter_mut().enumerate() {
        let key = format!("notify[{}]", cx.index("notify", i));
        secret(
            cx,
            &format!("{key}.url"),
            &mut n.url,
            &n.url_file,
            base,
            true,
        );
        if let Some(u) = &n.url
            && let Err(why) = check_https_url(u.expose_secret())
        {
            // The URL is a secret (Slack webhook URLs carry a token): do not echo it.
            let why = if why.contains("https") {
                "must be an https URL"
            } else {
                "is not a valid URL"
            };
            cx.err(format!("{key}.url"), why);
        }
    }
}
