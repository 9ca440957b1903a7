//! Turning a TOML document (plus environment variables) into `RawConfig`,
//! section by section and element by element, so one bad probe does not hide
//! the errors in the next one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Profile, Provider};
use serde::de::DeserializeOwned;

use super::error::{ConfigErrors, ConfigIssue};
use super::schema::{ACCOUNT_SECTIONS, AccountConfig, ProfileConfig, RawConfig, SECTIONS};
use super::validate::account_key;
use super::{Config, ENV_PREFIX, ENV_SPLIT, Strictness};
use crate::probe::ProbeConfig;
use crate::probe::config::{CommonConfig, Kind, KindConfig, LoadPart};

/// The environment provider of the contract: `CONTINUITY_AGENT_<SECTION>__<KEY>`.
/// Variables without `__` (such as `CONTINUITY_AGENT_LOG_FORMAT`) are CLI
/// settings, not configuration, and are left alone.
pub fn env_provider() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|k| k.as_str().contains(ENV_SPLIT))
        .split(ENV_SPLIT)
}

pub(super) fn load_file(
    path: &Path,
    with_env: bool,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    let origin = path.display().to_string();
    let src = std::fs::read_to_string(path)
        .map_err(|e| single(&origin, format!("cannot read the configuration file: {e}")))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut config = load_str(&src, &origin, base, with_env, strictness)?;
    config.path = Some(path.to_path_buf());
    Ok(config)
}

pub(super) fn load_str(
    src: &str,
    origin: &str,
    base_dir: &Path,
    with_env: bool,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    let mut fig = Figment::new().merge(Toml::string(src));
    if with_env {
        fig = fig.merge(env_provider());
    }
    // The merged document as figment holds it, tags (and so origins) kept.
    // Every provider here writes the default profile, the one a new Figment
    // selects. Not `fig.extract::<Dict>()`: that deserializes the whole tree
    // into a second copy, which at 10,000 probes was a fifth of the load.
    let root = match fig.data() {
        Ok(mut profiles) => Value::from(profiles.remove(&Profile::Default).unwrap_or_default()),
        Err(e) => {
            // Only TOML syntax errors land here: the document could not be read at all.
            let reason = without_source_lines(&e.kind.to_string());
            return Err(single(origin, format!("not valid TOML: {reason}")));
        }
    };
    let Value::Dict(_, dict) = &root else {
        unreachable!("Value::from(Dict) is a dict")
    };
    let mut cx = Cx {
        fig: &fig,
        origin: origin.to_string(),
        errors: Vec::new(),
        warnings: Vec::new(),
        root: &root,
        indices: BTreeMap::new(),
        suppressed: Default::default(),
        has_accounts: false,
        account_keys: Vec::new(),
        prefix: String::new(),
        scope: None,
    };
    let raw = sections(&mut cx, dict);
    super::validate::validate(raw, &mut cx, base_dir, strictness)
}

/// A TOML parse error without the excerpt of the file the parser quotes
/// (`11 | client_secret = 3141...`, then a caret line): that line may hold a
/// secret, e.g. a numeric one written without quotes. What remains says
/// where (line and column) and why, which is enough to find it.
fn without_source_lines(reason: &str) -> String {
    let excerpt = |line: &str| {
        let t = line.trim_start();
        let digits = t.trim_start_matches(|c: char| c.is_ascii_digit());
        digits.trim_start().starts_with('|')
    };
    reason
        .lines()
        .filter(|l| !l.trim().is_empty() && !excerpt(l))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(": ")
}

fn single(origin: &str, reason: String) -> ConfigErrors {
    ConfigErrors {
        errors: vec![ConfigIssue {
            origin: origin.to_string(),
            key: String::new(),
            reason,
        }],
        warnings: vec![],
    }
}

/// Collects issues and knows where each key came from.
pub(super) struct Cx<'a> {
    fig: &'a Figment,
    origin: String,
    /// The merged document (read-only: sections are deserialized from it).
    root: &'a Value,
    /// For list sections (by full key path, `rules` or `accounts.acme.rules`):
    /// original index of each element that parsed, so validation names
    /// `probes[3]` even when `probes[2]` failed to parse.
    indices: BTreeMap<String, Vec<usize>>,
    /// Keys already reported by deserialization and removed before retrying:
    /// validation must not report them again as "missing".
    suppressed: std::collections::BTreeSet<String>,
    /// The document has `[[accounts]]` (even if no element of it parsed):
    /// its top-level account sections are not an account of their own.
    pub has_accounts: bool,
    /// The key of each parsed `[[accounts]]` element (`accounts.acme`, or
    /// `accounts[2]` when its id cannot name it), in parsed order.
    pub account_keys: Vec<String>,
    /// Prepended to every key reported while one account is validated
    /// (`accounts.acme.`), so the per-section validators stay as they are.
    prefix: String,
    /// Original index of the `[[accounts]]` element being validated: where
    /// [`raw_labels`] looks for the account's own sections.
    scope: Option<usize>,
    pub errors: Vec<ConfigIssue>,
    pub warnings: Vec<ConfigIssue>,
}

impl Cx<'_> {
    /// Runs `f` with every key it reports, every index it asks for and every
    /// raw label it reads taken from the account parsed `i`-th: the
    /// validators of the account sections are written for the top level.
    pub fn in_account<R>(&mut self, i: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        let prefix = format!("{}.", self.account_keys[i]);
        let scope = self.index("accounts", i);
        let saved = (
            std::mem::replace(&mut self.prefix, prefix),
            self.scope.replace(scope),
        );
        let out = f(self);
        (self.prefix, self.scope) = saved;
        out
    }

    pub fn err(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = format!("{}{}", self.prefix, key.into());
        if self.suppressed.contains(&key) {
            return;
        }
        let origin = self.origin_of(&key);
        self.errors.push(ConfigIssue {
            origin,
            key,
            reason: reason.into(),
        });
    }

    pub fn warn(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = format!("{}{}", self.prefix, key.into());
        let origin = self.origin_of(&key);
        self.warnings.push(ConfigIssue {
            origin,
            key,
            reason: reason.into(),
        });
    }

    /// Original index in `section` of the `i`-th parsed element.
    pub fn index(&self, section: &str, i: usize) -> usize {
        self.indices
            .get(&format!("{}{section}", self.prefix))
            .and_then(|v| v.get(i))
            .copied()
            .unwrap_or(i)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The file or environment variable that supplied `key` (or its closest parent).
    fn origin_of(&self, key: &str) -> String {
        let root = self.root;
        let mut node = root;
        let mut deepest = root.tag();
        let mut keys: Vec<String> = Vec::new();
        for seg in key_segments(key) {
            let next = match (&seg, node) {
                (Seg::Key(k), Value::Dict(_, d)) => d.get(k.as_str()),
                (Seg::Index(i), Value::Array(_, a)) => a.get(*i),
                _ => None,
            };
            match next {
                Some(v) => {
                    if let Seg::Key(k) = &seg {
                        keys.push(k.clone());
                    }
                    node = v;
                    deepest = v.tag();
                }
                None => break,
            }
        }
        match self.fig.get_metadata(deepest) {
            Some(md) if md.name.contains("environment") => {
                let var: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("environment variable {ENV_PREFIX}{}", var.join(ENV_SPLIT))
            }
            _ => self.origin.clone(),
        }
    }
}

enum Seg {
    Key(String),
    Index(usize),
}

/// Parses `probes[2] (trunk-a).accept[0]` into key/index segments, skipping
/// the parenthesized labels that only exist for readability.
fn key_segments(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let part = match part.find(" (") {
            Some(i) => &part[..i],
            None => part,
        };
        let mut rest = part;
        if let Some(b) = rest.find('[') {
            out.push(Seg::Key(rest[..b].to_string()));
            rest = &rest[b..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                if let Ok(i) = stripped[..end].parse() {
                    out.push(Seg::Index(i));
                }
                rest = &stripped[end + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Seg::Key(rest.to_string()));
        }
    }
    out
}

/// Deserializes one value, recording every error under `key`.
///
/// serde stops at the first error, so after each failure the offending key is
/// removed and deserialization retried: one run reports every unknown key and
/// every bad value of the element. A "missing key" error for a key we removed
/// is not reported again, and the element still counts as failed.
pub(super) fn de<T: DeserializeOwned>(cx: &mut Cx, value: &Value, key: &str) -> Option<T> {
    let mut work = value.clone();
    let mut removed: Vec<Vec<String>> = Vec::new();
    let mut failed = false;
    // Bounded: each round removes at least one key.
    for _ in 0..64 {
        match work.deserialize::<T>() {
            // With keys removed the element is still worth validating (more
            // errors in one run); the errors already recorded fail the load.
            Ok(t) => {
                for r in &removed {
                    cx.suppressed.insert(join_key(key, r));
                }
                let _ = failed;
                return Some(t);
            }
            Err(e) => {
                failed = true;
                let mut progressed = false;
                for one in e {
                    let mut path = one.path.clone();
                    if let figment::error::Kind::UnknownField(field, _) = &one.kind {
                        // serde reports an unknown field at its parent's path.
                        if path.last() != Some(field) {
                            path.push(field.clone());
                        }
                    }
                    let is_missing = matches!(one.kind, figment::error::Kind::MissingField(_));
                    let after_removal = is_missing
                        && removed.iter().any(|r| {
                            let mut full = one.path.clone();
                            if let figment::error::Kind::MissingField(f) = &one.kind {
                                full.push(f.to_string());
                            }
                            *r == full
                        });
                    if !after_removal {
                        cx.err(join_key(key, &path), describe(&one.kind));
                    }
                    if !is_missing && !path.is_empty() && remove_path(&mut work, &path) {
                        removed.push(path);
                        progressed = true;
                    }
                }
                if !progressed {
                    return None;
                }
            }
        }
    }
    None
}

fn join_key(key: &str, path: &[String]) -> String {
    let mut k = key.to_string();
    for p in path {
        if p.parse::<usize>().is_ok() {
            k.push_str(&format!("[{p}]"));
            continue;
        }
        if !k.is_empty() {
            k.push('.');
        }
        k.push_str(p);
    }
    k
}

/// Removes the value at `path` (dict keys and array indices); false if absent.
fn remove_path(v: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = v;
    for seg in parents {
        node = match node {
            Value::Dict(_, d) => match d.get_mut(seg.as_str()) {
                Some(n) => n,
                None => return false,
            },
            Value::Array(_, a) => match seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
                Some(n) => n,
                None => return false,
            },
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, d) => d.remove(last.as_str()).is_some(),
        Value::Array(_, a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// What kind of value was found, without the value.
fn type_name(actual: &figment::error::Actual) -> &'static str {
    use figment::error::Actual;
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        _ => "another kind of value",
    }
}

/// serde's messages, phrased for operators.
fn describe(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        // Named by its type, never its value: a secret written as a number
        // (`client_secret = 12345`) must not be echoed back.
        Kind::InvalidType(actual, expected) => {
            format!(
                "invalid type: expected {expected}, found {}",
                type_name(actual)
            )
        }
        Kind::UnknownVariant(v, expected) => format!(
            "unknown value `{v}`; expected one of: {}",
            expected.join(", ")
        ),
        other => other.to_string(),
    }
}

/// Splits the document into sections and deserializes each on its own.
fn sections(cx: &mut Cx, root: &Dict) -> RawConfig {
    let mut raw = RawConfig::default();
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            cx.err(
                key.clone(),
                format!(
                    "unknown section `{key}`; known sections: {}",
                    SECTIONS.join(", ")
                ),
            );
        }
    }
    let top = At::TOP;
    macro_rules! set {
        ($field:ident, $parsed:expr) => {
            if let Some(parsed) = $parsed {
                raw.$field = parsed;
            }
        };
    }
    set!(agent, section(cx, root, "agent", &top));
    set!(store, section(cx, root, "store", &top));
    set!(engine, section(cx, root, "engine", &top));
    set!(alerts, section(cx, root, "alerts", &top));
    set!(webhooks, section(cx, root, "webhooks", &top));
    set!(api, section(cx, root, "api", &top));
    set!(cluster, section(cx, root, "cluster", &top));
    set!(
        probes,
        list(cx, root, "probes", &top, probe_entry).map(Into::into)
    );
    set!(notify, list(cx, root, "notify", &top, de));
    if root.contains_key("accounts") {
        cx.has_accounts = true;
        raw.accounts = accounts(cx, root);
    } else {
        // One account, written at the top level.
        let own = account_sections(cx, root, &top);
        raw.talkdesk = own.talkdesk;
        raw.profiles = own.profiles;
        raw.rules = own.rules;
        raw.maintenance = own.maintenance;
        raw.drills = own.drills;
    }
    raw
}

/// Where a group of sections sits: the top level, or one `[[accounts]]`
/// element (`accounts.acme.` in key paths, `accounts.` in TOML headers).
struct At {
    key: String,
    table: &'static str,
}

impl At {
    const TOP: At = At {
        key: String::new(),
        table: "",
    };
}

/// `[name]`, deserialized as a whole; `None` if absent or broken.
fn section<T: DeserializeOwned>(cx: &mut Cx, dict: &Dict, name: &str, at: &At) -> Option<T> {
    let v = dict.get(name)?;
    de(cx, v, &format!("{}{name}", at.key))
}

/// `[[name]]`, element by element: the elements that parsed.
fn list<T>(
    cx: &mut Cx,
    dict: &Dict,
    name: &str,
    at: &At,
    parse: fn(&mut Cx, &Value, &str) -> Option<T>,
) -> Option<Vec<T>> {
    let key = format!("{}{name}", at.key);
    let Value::Array(_, items) = dict.get(name)? else {
        let header = format!("{}{name}", at.table);
        cx.err(
            key,
            format!("must be an array of tables: write [[{header}]]"),
        );
        return None;
    };
    let mut parsed = Vec::new();
    let mut indices = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(p) = parse(cx, item, &element_key(&key, i, item)) {
            parsed.push(p);
            indices.push(i);
        }
    }
    cx.indices.insert(key, indices);
    Some(parsed)
}

/// `[profiles.NAME]`, profile by profile.
fn profiles(cx: &mut Cx, dict: &Dict, at: &At) -> Option<BTreeMap<String, ProfileConfig>> {
    let key = format!("{}profiles", at.key);
    let Value::Dict(_, d) = dict.get("profiles")? else {
        let header = format!("{}profiles", at.table);
        cx.err(
            key,
            format!("must be a table of profiles: write [{header}.NAME]"),
        );
        return None;
    };
    let mut profiles = BTreeMap::new();
    for (name, p) in d {
        if let Some(parsed) = de(cx, p, &format!("{key}.{name}")) {
            profiles.insert(name.clone(), parsed);
        }
    }
    Some(profiles)
}

/// The sections an account has of its own ([`ACCOUNT_SECTIONS`]), from the
/// top level or from one `[[accounts]]` element. The id is left empty.
fn account_sections(cx: &mut Cx, dict: &Dict, at: &At) -> AccountConfig {
    let mut a = AccountConfig::default();
    if let Some(t) = section(cx, dict, "talkdesk", at) {
        a.talkdesk = t;
    }
    if let Some(p) = profiles(cx, dict, at) {
        a.profiles = p;
    }
    if let Some(r) = list(cx, dict, "rules", at, de) {
        a.rules = r;
    }
    if let Some(m) = list(cx, dict, "maintenance", at, de) {
        a.maintenance = m;
    }
    if let Some(d) = list(cx, dict, "drills", at, de) {
        a.drills = d;
    }
    a
}

/// `[[accounts]]`, element by element, each named `accounts.<id>` in key
/// paths. The top-level account sections must be absent: which account
/// would they belong to?
fn accounts(cx: &mut Cx, root: &Dict) -> Vec<AccountConfig> {
    for key in ACCOUNT_SECTIONS.iter().filter(|k| root.contains_key(**k)) {
        let header = match *key {
            "talkdesk" => "[accounts.talkdesk]".to_string(),
            "profiles" => "[accounts.profiles.NAME]".to_string(),
            list => format!("[[accounts.{list}]]"),
        };
        let mut reason = format!(
            "cannot be combined with [[accounts]]: move it into an account (write {header} after the account's `id`)"
        );
        if cx.origin_of(key).starts_with("environment variable") {
            reason.push_str(
                "; accounts cannot be set from environment variables: use *_file keys for secrets",
            );
        }
        cx.err(*key, reason);
    }
    let Some(Value::Array(_, items)) = root.get("accounts") else {
        cx.err(
            "accounts",
            "must be an array of tables: write [[accounts]] (accounts cannot be set from environment variables)",
        );
        return Vec::new();
    };
    if items.is_empty() {
        cx.err(
            "accounts",
            "lists no account: write at least one [[accounts]], or leave accounts out and use the top-level sections",
        );
    }
    let (mut out, mut indices, mut named) = (Vec::new(), Vec::new(), BTreeSet::new());
    for (i, item) in items.iter().enumerate() {
        let Value::Dict(_, dict) = item else {
            // Not a table: serde's own "invalid type" message says so.
            let _ = de::<AccountConfig>(cx, item, &format!("accounts[{i}]"));
            continue;
        };
        let id = match dict.get("id") {
            Some(v) => de::<String>(cx, v, &format!("accounts[{i}].id")),
            None => {
                cx.err(format!("accounts[{i}]"), "missing required key `id`");
                None
            }
        };
        let key = account_key(cx, i, id.as_deref(), &mut named);
        for k in dict.keys() {
            if k != "id" && !ACCOUNT_SECTIONS.contains(&k.as_str()) {
                cx.err(
                    format!("{key}.{k}"),
                    format!(
                        "unknown key `{k}`; expected one of: id, {}",
                        ACCOUNT_SECTIONS.join(", ")
                    ),
                );
            }
        }
        let at = At {
            key: format!("{key}."),
            table: "accounts.",
        };
        let mut account = account_sections(cx, dict, &at);
        account.id = id.unwrap_or_default();
        out.push(account);
        indices.push(i);
        cx.account_keys.push(key);
    }
    cx.indices.insert("accounts".to_string(), indices);
    out
}

/// One `[[probes]]` entry. Its keys are sorted by `type` before serde sees
/// them: a key of another type gets a precise "does not apply" error, and
/// the common part and the type's part are each deserialized straight from
/// the document, so every error keeps its key path (serde's internally tagged
/// enums would buffer the entry and lose it).
fn probe_entry(cx: &mut Cx, item: &Value, key: &str) -> Option<ProbeConfig> {
    let Value::Dict(tag, dict) = item else {
        // Not a table: serde's own "invalid type" message says so.
        return de::<CommonConfig>(cx, item, key).and(None);
    };
    let kinds = KindConfig::kinds::<Part>();
    let kind = probe_type(cx, dict, key, &kinds);
    let common_keys = CommonConfig::keys();
    let (mut common, mut own) = (Dict::new(), Dict::new());
    for (k, v) in dict.iter().filter(|(k, _)| *k != "type") {
        if common_keys.contains(&k.as_str()) {
            common.insert(k.clone(), v.clone());
        } else if let Some(kind) = kind {
            if kind.keys.contains(&k.as_str()) {
                own.insert(k.clone(), v.clone());
            } else if kinds.iter().any(|other| other.keys.contains(&k.as_str())) {
                let reason = format!("`{k}` does not apply to probes of type {}", kind.name);
                cx.err(format!("{key}.{k}"), reason);
            } else {
                let expected: Vec<&str> = common_keys
                    .iter()
                    .chain(&["type"])
                    .chain(kind.keys)
                    .copied()
                    .collect();
                let reason = format!(
                    "unknown key `{k}`; expected one of: {}",
                    expected.join(", ")
                );
                cx.err(format!("{key}.{k}"), reason);
            }
        }
    }
    let common = de::<CommonConfig>(cx, &Value::Dict(*tag, common), key);
    let mut part = Part {
        cx,
        value: Value::Dict(*tag, own),
        key,
    };
    let kind = (kind?.load)(&mut part);
    Some(ProbeConfig {
        common: common?,
        kind: kind?,
    })
}

/// The entry's `type`, or an error naming the known ones.
fn probe_type<'k, L>(
    cx: &mut Cx,
    dict: &Dict,
    key: &str,
    kinds: &'k [Kind<L>],
) -> Option<&'k Kind<L>> {
    let Some(v) = dict.get("type") else {
        cx.err(key, "missing required key `type`");
        return None;
    };
    let found = kinds.iter().find(|k| v.as_str() == Some(k.name));
    if found.is_none() {
        let shown = v.as_str().map_or_else(|| format!("{v:?}"), str::to_string);
        let names: Vec<&str> = kinds.iter().map(|k| k.name).collect();
        cx.err(
            format!("{key}.type"),
            format!(
                "unknown value `{shown}`; expected one of: {}",
                names.join(", ")
            ),
        );
    }
    found
}

/// A probe type's keys, loaded with [`de`] so errors keep their path.
struct Part<'c, 'f, 'k> {
    cx: &'c mut Cx<'f>,
    value: Value,
    key: &'k str,
}

impl LoadPart for Part<'_, '_, '_> {
    fn load<T: DeserializeOwned>(&mut self) -> Option<T> {
        de(self.cx, &self.value, self.key)
    }
}

/// `probes[2] (trunk-a)`: the index for the origin lookup, the id or name for humans.
pub(super) fn element_key(section: &str, i: usize, item: &Value) -> String {
    let label = item
        .find_ref("id")
        .or_else(|| item.find_ref("name"))
        .and_then(|v| v.as_str().map(str::to_string));
    match label {
        Some(l) => format!("{section}[{i}] ({l})"),
        None => format!("{section}[{i}]"),
    }
}

/// Ids (or names) present in a list section even if the element failed to
/// parse, so references to it are not reported as dangling on top of the
/// real error.
///
/// Inside [`Cx::in_account`], the account's own sections are searched.
pub(super) fn raw_labels(cx: &Cx, section: &str, field: &str) -> Vec<String> {
    let Value::Dict(_, root) = cx.root else {
        return Vec::new();
    };
    let dict = match cx.scope {
        None => root,
        Some(i) => match root.get("accounts").and_then(|a| a.as_array()?.get(i)) {
            Some(Value::Dict(_, d)) => d,
            _ => return Vec::new(),
        },
    };
    match dict.get(section) {
        Some(Value::Array(_, items)) => items
            .iter()
            .filter_map(|i| {
                i.find_ref(field)
                    .and_then(|v| v.as_str().map(str::to_string))
            })
            .collect(),
        Some(Value::Dict(_, d)) => d.keys().cloned().collect(),
        _ => Vec::new(),
    }
}
