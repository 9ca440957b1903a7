//! `[[accounts]]`: ids, and each account's own sections validated by the
//! validators of the top-level ones (`talkdesk`, `profiles`, `rules`,
//! `calendar`), with the account in every key path (`Cx::in_account`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::{calendar, profiles, rules, store, talkdesk};
use crate::config::Strictness;
use crate::config::load::{Cx, raw_labels};
use crate::config::schema::*;
use crate::domain::Profile;
use crate::engine::spec::{ProbeSpec, RuleSpec};

/// An account id appears in URLs, metric labels and store rows: lowercase,
/// no dots (a key path `accounts.<id>.rules` stays unambiguous).
static ACCOUNT_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,62}$").expect("valid regex"));

/// The key path of the `i`-th `[[accounts]]` element: `accounts.<id>`, or
/// `accounts[i]` when its id is missing, invalid or already taken (those
/// are reported here, at `accounts[i].id`). `named` collects the ids seen.
pub(in crate::config) fn account_key(
    cx: &mut Cx,
    i: usize,
    id: Option<&str>,
    named: &mut BTreeSet<String>,
) -> String {
    let Some(id) = id else {
        return format!("accounts[{i}]");
    };
    if !ACCOUNT_ID.is_match(id) {
        cx.err(
            format!("accounts[{i}].id"),
            format!("{id:?} must be 1-63 lowercase letters, digits, '_' or '-', starting with a letter or digit (it appears in URLs, metric labels and store rows)"),
        );
        return format!("accounts[{i}]");
    }
    if !named.insert(id.to_string()) {
        cx.err(
            format!("accounts[{i}].id"),
            format!("duplicate account id {id:?}"),
        );
        return format!("accounts[{i}]");
    }
    format!("accounts.{id}")
}

/// What validating one account needs from the shared sections.
pub(super) struct Shared<'a> {
    pub probe_ids: &'a [String],
    pub probe_specs: &'a [ProbeSpec],
    /// Whether any webhook source or API token can deliver alerts.
    pub alert_inputs: bool,
    pub cluster: Option<&'a ClusterConfig>,
    pub base: &'a Path,
    pub strictness: Strictness,
}

/// One account's sections, validated and compiled: its profiles and rules.
/// Keys are reported as the top-level ones; `Cx::in_account` names the account.
pub(super) fn account(
    cx: &mut Cx,
    a: &mut AccountConfig,
    shared: &Shared,
) -> (BTreeMap<String, Profile>, Vec<RuleSpec>) {
    talkdesk::talkdesk(cx, &mut a.talkdesk, shared.base, shared.strictness);
    store::request_fits_lease(cx, shared.cluster, a.talkdesk.request_timeout);
    let profiles = profiles::profiles(cx, &a.profiles);
    // Names that exist even if their element failed to parse, so that a broken
    // element produces one error, not one more per reference to it.
    let mut profile_names: BTreeSet<String> = profiles.keys().cloned().collect();
    profile_names.extend(raw_labels(cx, "profiles", ""));
    let rules = rules::rules(
        cx,
        &a.rules,
        &profile_names,
        shared.probe_ids,
        shared.probe_specs,
        shared.alert_inputs,
    );
    calendar::calendar(cx, &a.maintenance, &a.drills, &profile_names);
    (profiles, rules)
}

/// Two accounts that reach the same Talkdesk account (the same token URL)
/// would each run an engine writing its fallback: they would overwrite each
/// other's settings. A warning, not an error: a test double may serve
/// several accounts behind one URL.
pub(super) fn same_talkdesk(cx: &mut Cx, accounts: &[AccountConfig]) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (i, a) in accounts.iter().enumerate() {
        let t = &a.talkdesk;
        let url = t.token_url.clone().or_else(|| {
            let account = t.account.as_deref()?;
            crate::talkdesk::client::region_token_url(&t.region, account)
        });
        let Some(url) = url else { continue };
        let key = cx.account_keys[i].clone();
        match seen.get(&url) {
            Some(first) => cx.warn(
                format!("{key}.talkdesk"),
                format!("the same Talkdesk account as {first} ({url}): their rules would overwrite each other's fallback settings"),
            ),
            None => {
                seen.insert(url, key);
            }
        }
    }
}
