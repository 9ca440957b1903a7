//! Rule conditions (`when = ...`) compiled into the engine's [`Expr`]:
//! exactly one kind per condition, globs resolved to the configured probe
//! ids, Alertmanager matchers parsed. Every error is reported with its key
//! path, not just the first.

use crate::config::schema::ConditionConfig;
use crate::domain::ProbeHealth;
use crate::engine::expr::Expr;
use crate::engine::matcher::Matcher;

/// A compile error: the key path inside `when` and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub path: String,
    pub reason: String,
}

/// Compiles a condition. `path` is the key path of the condition (for errors),
/// `probe_ids` the configured probes. Returns every error found, not just the first.
pub fn compile(
    cond: &ConditionConfig,
    path: &str,
    probe_ids: &[&str],
) -> Result<Expr, Vec<CompileError>> {
    let mut errors = Vec::new();
    let expr = compile_inner(cond, path, probe_ids, &mut errors);
    match expr {
        Some(e) if errors.is_empty() => Ok(e),
        _ => Err(errors),
    }
}

fn compile_inner(
    c: &ConditionConfig,
    path: &str,
    probe_ids: &[&str],
    errors: &mut Vec<CompileError>,
) -> Option<Expr> {
    let kind = one_kind(c, path, errors)?;
    if c.at_least.is_some() && !matches!(kind, "down" | "up" | "unknown") {
        push(
            errors,
            format!("{path}.at_least"),
            format!("at_least applies to down/up/unknown, not {kind}"),
        );
    }
    match kind {
        "down" | "up" | "unknown" => compile_probes(c, kind, path, probe_ids, errors),
        "alert" => compile_alert(c.alert.as_deref().unwrap_or_default(), path, errors),
        "all" => compile_list(kind, c.all.as_deref(), path, probe_ids, errors).map(Expr::All),
        "any" => compile_list(kind, c.any.as_deref(), path, probe_ids, errors).map(Expr::Any),
        _ => {
            let inner = c.not.as_deref()?;
            compile_inner(inner, &format!("{path}.not"), probe_ids, errors)
                .map(|e| Expr::Not(Box::new(e)))
        }
    }
}

fn push(errors: &mut Vec<CompileError>, path: String, reason: String) {
    errors.push(CompileError { path, reason });
}

/// The one kind a condition is, or an error naming what was found.
fn one_kind(
    c: &ConditionConfig,
    path: &str,
    errors: &mut Vec<CompileError>,
) -> Option<&'static str> {
    let kinds: Vec<&'static str> = [
        ("down", c.down.is_some()),
        ("up", c.up.is_some()),
        ("unknown", c.unknown.is_some()),
        ("alert", c.alert.is_some()),
        ("all", c.all.is_some()),
        ("any", c.any.is_some()),
        ("not", c.not.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    if let [kind] = kinds.as_slice() {
        return Some(kind);
    }
    let reason = if kinds.is_empty() {
        "a condition needs exactly one of down, up, unknown, alert, all, any, not".to_string()
    } else {
        format!(
            "a condition needs exactly one of down, up, unknown, alert, all, any, not; found {}",
            kinds.join(", ")
        )
    };
    push(errors, path.to_string(), reason);
    None
}

/// `down` / `up` / `unknown`: the glob resolved to configured probe ids now,
/// so the engine never matches strings.
fn compile_probes(
    c: &ConditionConfig,
    kind: &str,
    path: &str,
    probe_ids: &[&str],
    errors: &mut Vec<CompileError>,
) -> Option<Expr> {
    let (state, glob) = match kind {
        "down" => (ProbeHealth::Down, c.down.as_deref()),
        "up" => (ProbeHealth::Up, c.up.as_deref()),
        _ => (ProbeHealth::Unknown, c.unknown.as_deref()),
    };
    let glob = glob.unwrap_or_default();
    let key = format!("{path}.{kind}");
    let matcher = match globset::Glob::new(glob) {
        Ok(g) => g.compile_matcher(),
        Err(e) => {
            push(errors, key, format!("invalid probe glob {glob:?}: {e}"));
            return None;
        }
    };
    let probes: Vec<String> = probe_ids
        .iter()
        .filter(|id| matcher.is_match(id))
        .map(|s| s.to_string())
        .collect();
    if probes.is_empty() {
        let known = if probe_ids.is_empty() {
            "none are configured".to_string()
        } else {
            probe_ids.join(", ")
        };
        push(
            errors,
            key,
            format!("probe glob {glob:?} matches no probe (probes: {known})"),
        );
        return None;
    }
    if let Some(n) = c.at_least {
        if n == 0 {
            push(
                errors,
                format!("{path}.at_least"),
                "at_least must be >= 1".into(),
            );
        } else if n as usize > probes.len() {
            push(
                errors,
                format!("{path}.at_least"),
                format!(
                    "at_least = {n} but {glob:?} matches only {} probe(s): {}",
                    probes.len(),
                    probes.join(", ")
                ),
            );
        }
    }
    Some(Expr::Probes {
        state,
        glob: glob.to_string(),
        probes,
        at_least: c.at_least,
    })
}

/// `alert`: Alertmanager matchers, every bad one reported.
fn compile_alert(list: &[String], path: &str, errors: &mut Vec<CompileError>) -> Option<Expr> {
    if list.is_empty() {
        push(
            errors,
            format!("{path}.alert"),
            "needs at least one matcher, e.g. 'alertname=\"TrunkDown\"'".into(),
        );
        return None;
    }
    let mut matchers = Vec::new();
    for (i, m) in list.iter().enumerate() {
        match Matcher::parse(m) {
            Ok(m) => matchers.push(m),
            Err(why) => push(errors, format!("{path}.alert[{i}]"), why),
        }
    }
    (matchers.len() == list.len()).then_some(Expr::Alert { matchers })
}

/// `all` / `any`: every child compiled (and its errors reported) even when
/// an earlier one failed.
fn compile_list(
    kind: &str,
    list: Option<&[ConditionConfig]>,
    path: &str,
    probe_ids: &[&str],
    errors: &mut Vec<CompileError>,
) -> Option<Vec<Expr>> {
    let list = list.unwrap_or_default();
    if list.is_empty() {
        push(
            errors,
            format!("{path}.{kind}"),
            format!("{kind} needs at least one condition"),
        );
        return None;
    }
    let children: Vec<Option<Expr>> = list
        .iter()
        .enumerate()
        .map(|(i, sub)| compile_inner(sub, &format!("{path}.{kind}[{i}]"), probe_ids, errors))
        .collect();
    children.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(toml_src: &str) -> ConditionConfig {
        toml::from_str(toml_src).unwrap()
    }

    const PROBES: &[&str] = &["trunk-a", "trunk-b", "talkdesk-status", "agents-us"];

    #[test]
    fn compiles_the_design_example() {
        let c = cond(
            r#"any = [
              { down = "trunk-*", at_least = 2 },
              { alert = ['alertname="TalkdeskVoiceDown"', 'severity=~"critical|page"'] },
              { all = [ { down = "talkdesk-status" }, { down = "agents-*" } ] },
            ]"#,
        );
        let e = compile(&c, "rules[0].when", PROBES).unwrap();
        let Expr::Any(v) = &e else { panic!("{e:?}") };
        assert_eq!(v.len(), 3);
        assert!(
            matches!(&v[0], Expr::Probes { probes, at_least: Some(2), .. } if probes == &["trunk-a", "trunk-b"])
        );
        assert!(e.uses_probes() && e.uses_alerts());
        assert_eq!(
            e.probe_ids(),
            vec!["agents-us", "talkdesk-status", "trunk-a", "trunk-b"]
        );
    }

    #[test]
    fn reports_every_error_with_its_path() {
        let c = cond(
            r#"all = [
              { down = "nope-*" },
              { alert = ['severity=~"("'] },
              { down = "trunk-*", at_least = 3 },
              { up = "trunk-a", alert = ["a=b"] },
            ]"#,
        );
        let errs = compile(&c, "rules[1].when", PROBES).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "rules[1].when.all[0].down",
                "rules[1].when.all[1].alert[0]",
                "rules[1].when.all[2].at_least",
                "rules[1].when.all[3]"
            ]
        );
        assert!(errs[0].reason.contains("matches no probe"));
        assert!(errs[3].reason.contains("found up, alert"));
    }
}
