//! Evaluating and explaining rule conditions.
//!
//! Conditions are evaluated in three-valued (Kleene) logic. Normally every
//! leaf is true or false and so is the result. The blind guard and maintenance
//! windows evaluate with probe leaves *masked* to `Unknown`: the result is then
//! `True` or `False` only when alerts alone decide it, and `Unknown` when it
//! depends on probes. That is how "probe-driven rules are frozen" and "probe
//! driven activation is suppressed" are made exact, even for rules that mix
//! probe and alert leaves under `not`.
//!
//! `Node` is `Expr` with probe ids resolved to indices, so evaluating a rule
//! with thousands of probes does no hashing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::{AlertKey, ProbeHealth, Timestamp};

use super::expr::Expr;
use super::matcher::Matcher;
use super::probe::ProbeState;
use super::spec::ProbeSpec;

/// Longest list of probes or alerts named in one reason; the rest are counted.
const MAX_LISTED: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tri {
    False,
    True,
    Unknown,
}

impl Tri {
    fn from_bool(b: bool) -> Tri {
        if b { Tri::True } else { Tri::False }
    }

    fn not(self) -> Tri {
        match self {
            Tri::True => Tri::False,
            Tri::False => Tri::True,
            Tri::Unknown => Tri::Unknown,
        }
    }
}

/// An active alert as the engine keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub expires: Timestamp,
}

/// What a condition reads.
pub struct Ctx<'a> {
    pub probe_specs: &'a [ProbeSpec],
    pub probes: &'a [ProbeState],
    pub alerts: &'a BTreeMap<AlertKey, ActiveAlert>,
    /// Evaluate probe leaves as `Unknown` (blind guard, maintenance).
    pub mask_probes: bool,
}

#[derive(Clone, Debug)]
pub enum Node {
    Probes {
        state: ProbeHealth,
        glob: String,
        probes: Vec<usize>,
        at_least: Option<u32>,
    },
    Alert {
        matchers: Vec<Matcher>,
    },
    All(Vec<Node>),
    Any(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    /// Resolves probe ids; ids missing from `index` are dropped (the config
    /// validator already rejects them, so this only guards against misuse).
    pub fn compile(e: &Expr, index: &HashMap<String, usize>) -> Node {
        match e {
            Expr::Probes {
                state,
                glob,
                probes,
                at_least,
            } => Node::Probes {
                state: *state,
                glob: glob.clone(),
                probes: probes
                    .iter()
                    .filter_map(|p| index.get(p).copied())
                    .collect(),
                at_least: *at_least,
            },
            Expr::Alert { matchers } => Node::Alert {
                matchers: matchers.clone(),
            },
            Expr::All(v) => Node::All(v.iter().map(|e| Node::compile(e, index)).collect()),
            Expr::Any(v) => Node::Any(v.iter().map(|e| Node::compile(e, index)).collect()),
            Expr::Not(e) => Node::Not(Box::new(Node::compile(e, index))),
        }
    }

    /// Probe indices this node reads.
    pub fn probe_indices(&self, out: &mut Vec<usize>) {
        match self {
            Node::Probes { probes, .. } => out.extend(probes.iter().copied()),
            Node::Alert { .. } => {}
            Node::All(v) | Node::Any(v) => v.iter().for_each(|n| n.probe_indices(out)),
            Node::Not(n) => n.probe_indices(out),
        }
    }

    pub fn uses_alerts(&self) -> bool {
        match self {
            Node::Probes { .. } => false,
            Node::Alert { .. } => true,
            Node::All(v) | Node::Any(v) => v.iter().any(Node::uses_alerts),
            Node::Not(n) => n.uses_alerts(),
        }
    }

    pub fn eval(&self, ctx: &Ctx) -> Tri {
        match self {
            Node::Probes { .. } if ctx.mask_probes => Tri::Unknown,
            Node::Probes {
                state,
                probes,
                at_least,
                ..
            } => {
                let n = count_in(ctx, probes, *state);
                let need = at_least.map_or(probes.len(), |k| k as usize);
                // An empty probe list never holds: "every probe of none is down"
                // must not switch calls away.
                Tri::from_bool(!probes.is_empty() && n >= need.max(1))
            }
            Node::Alert { matchers } => {
                Tri::from_bool(matching_alerts(ctx, matchers).next().is_some())
            }
            Node::All(v) => {
                let mut acc = Tri::True;
                for n in v {
                    match n.eval(ctx) {
                        Tri::False => return Tri::False,
                        Tri::Unknown => acc = Tri::Unknown,
                        Tri::True => {}
                    }
                }
                acc
            }
            Node::Any(v) => {
                let mut acc = Tri::False;
                for n in v {
                    match n.eval(ctx) {
                        Tri::True => return Tri::True,
                        Tri::Unknown => acc = Tri::Unknown,
                        Tri::False => {}
                    }
                }
                acc
            }
            Node::Not(n) => n.eval(ctx).not(),
        }
    }

    /// Appends one line per leaf that makes this (true) node true, with the
    /// resolved inputs: probe states and details, alert keys and labels.
    pub fn explain(&self, ctx: &Ctx, out: &mut Vec<String>) {
        if self.eval(ctx) != Tri::True {
            return;
        }
        match self {
            Node::Probes {
                state,
                glob,
                probes,
                ..
            } => out.push(explain_probes(ctx, *state, glob, probes)),
            Node::Alert { matchers } => out.push(explain_alert(ctx, matchers)),
            Node::All(v) | Node::Any(v) => v.iter().for_each(|n| n.explain(ctx, out)),
            Node::Not(n) => out.push(format!("not ({})", n.describe(ctx.probe_specs))),
        }
    }

    /// Appends one line per probe leaf that is *not* (yet) true but has some
    /// of its probes in the state it counts, e.g.
    /// `1 of 2 probes matching "trunk-*" down; needs 2`: how close a rule is.
    pub fn progress(&self, ctx: &Ctx, out: &mut Vec<String>) {
        match self {
            Node::Probes {
                state,
                glob,
                probes,
                at_least,
            } => {
                let n = count_in(ctx, probes, *state);
                let need = at_least.map_or(probes.len(), |k| k as usize).max(1);
                if n > 0 && n < need {
                    out.push(format!(
                        "{n} of {} probes matching {glob:?} {state}; needs {need}",
                        probes.len()
                    ));
                }
            }
            Node::Alert { .. } | Node::Not(_) => {}
            Node::All(v) | Node::Any(v) => v.iter().for_each(|n| n.progress(ctx, out)),
        }
    }

    /// The condition as text, e.g. `any(down "trunk-*" >= 2, alert[alertname="X"])`.
    pub fn describe(&self, specs: &[ProbeSpec]) -> String {
        match self {
            Node::Probes {
                state,
                glob,
                at_least,
                ..
            } => match at_least {
                Some(k) => format!("{state} {glob:?} at_least {k}"),
                None => format!("{state} {glob:?}"),
            },
            Node::Alert { matchers } => format!("alert[{}]", join_matchers(matchers)),
            Node::All(v) => format!("all({})", describe_list(v, specs)),
            Node::Any(v) => format!("any({})", describe_list(v, specs)),
            Node::Not(n) => format!("not({})", n.describe(specs)),
        }
    }
}

fn describe_list(v: &[Node], specs: &[ProbeSpec]) -> String {
    v.iter()
        .map(|n| n.describe(specs))
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_matchers(m: &[Matcher]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_in(ctx: &Ctx, probes: &[usize], state: ProbeHealth) -> usize {
    probes
        .iter()
        .filter(|&&i| ctx.probes.get(i).is_some_and(|p| p.health == state))
        .count()
}

fn matching_alerts<'a>(
    ctx: &'a Ctx,
    matchers: &'a [Matcher],
) -> impl Iterator<Item = (&'a AlertKey, &'a ActiveAlert)> + 'a {
    ctx.alerts
        .iter()
        .filter(move |(_, a)| matchers.iter().all(|m| m.matches(&a.labels)))
}

/// `2 of 2 probes matching "trunk-*" down (trunk-a: timeout after 2s; trunk-b: 503 Service Unavailable)`
fn explain_probes(ctx: &Ctx, state: ProbeHealth, glob: &str, probes: &[usize]) -> String {
    let hits: Vec<usize> = probes
        .iter()
        .copied()
        .filter(|&i| ctx.probes.get(i).is_some_and(|p| p.health == state))
        .collect();
    let details: Vec<String> = hits
        .iter()
        .take(MAX_LISTED)
        .map(|&i| {
            let id = ctx.probe_specs.get(i).map_or("?", |s| s.id.as_str());
            let detail = ctx
                .probes
                .get(i)
                .and_then(|p| p.last_detail.as_deref())
                .unwrap_or("no result yet");
            format!("{id}: {detail}")
        })
        .collect();
    let more = hits.len().saturating_sub(MAX_LISTED);
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    let single = probes.len() == 1 && ctx.probe_specs.get(probes[0]).is_some_and(|s| s.id == glob);
    if single {
        // `probe crm down (503 Service Unavailable)`: the id is already named.
        let detail = probes
            .first()
            .and_then(|&i| ctx.probes.get(i))
            .and_then(|p| p.last_detail.as_deref())
            .unwrap_or("no result yet");
        format!("probe {glob} {state} ({detail})")
    } else {
        format!(
            "{} of {} probes matching {glob:?} {state} ({}{more})",
            hits.len(),
            probes.len(),
            details.join("; ")
        )
    }
}

/// `alert alertname="TalkdeskVoiceDown" matched by alertmanager/3f2a {alertname="TalkdeskVoiceDown", severity="critical"}`
fn explain_alert(ctx: &Ctx, matchers: &[Matcher]) -> String {
    let hits: Vec<(&AlertKey, &ActiveAlert)> = matching_alerts(ctx, matchers).collect();
    let listed: Vec<String> = hits
        .iter()
        .take(MAX_LISTED)
        .map(|(k, a)| {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{k} {{{}}}", labels.join(", "))
        })
        .collect();
    let more = hits.len().saturating_sub(MAX_LISTED);
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "alert [{}] matched by {}{more}",
        join_matchers(matchers),
        listed.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(health: ProbeHealth, detail: &str) -> ProbeState {
        ProbeState {
            health,
            last_detail: Some(detail.into()),
            ..ProbeState::default()
        }
    }

    fn specs(ids: &[&str]) -> Vec<ProbeSpec> {
        ids.iter()
            .map(|id| ProbeSpec {
                id: id.to_string(),
                kind: "sip",
                rise: 2,
                fall: 3,
            })
            .collect()
    }

    fn leaf(state: ProbeHealth, glob: &str, probes: Vec<usize>, at_least: Option<u32>) -> Node {
        Node::Probes {
            state,
            glob: glob.into(),
            probes,
            at_least,
        }
    }

    #[test]
    fn engine_eval_kleene_masking() {
        let sp = specs(&["a"]);
        let probes = vec![probe(ProbeHealth::Down, "timeout")];
        let mut alerts = BTreeMap::new();
        let down = leaf(ProbeHealth::Down, "a", vec![0], None);
        let alert = Node::Alert {
            matchers: vec![Matcher::parse("alertname=X").unwrap()],
        };
        fn ctx<'a>(
            sp: &'a [ProbeSpec],
            probes: &'a [ProbeState],
            alerts: &'a BTreeMap<AlertKey, ActiveAlert>,
            mask_probes: bool,
        ) -> Ctx<'a> {
            Ctx {
                probe_specs: sp,
                probes,
                alerts,
                mask_probes,
            }
        }
        let any = Node::Any(vec![down.clone(), alert.clone()]);
        let all = Node::All(vec![down.clone(), alert.clone()]);
        assert_eq!(any.eval(&ctx(&sp, &probes, &alerts, false)), Tri::True);
        assert_eq!(any.eval(&ctx(&sp, &probes, &alerts, true)), Tri::Unknown);
        assert_eq!(
            all.eval(&ctx(&sp, &probes, &alerts, true)),
            Tri::False,
            "alert absent decides all()"
        );
        assert_eq!(
            Node::Not(Box::new(down)).eval(&ctx(&sp, &probes, &alerts, true)),
            Tri::Unknown
        );
        alerts.insert(
            AlertKey {
                source: "am".into(),
                id: "1".into(),
            },
            ActiveAlert {
                labels: [("alertname".to_string(), "X".to_string())].into(),
                summary: None,
                first_seen: Timestamp(0),
                last_seen: Timestamp(0),
                expires: Timestamp(1),
            },
        );
        assert_eq!(
            any.eval(&ctx(&sp, &probes, &alerts, true)),
            Tri::True,
            "alert alone decides any()"
        );
        assert_eq!(all.eval(&ctx(&sp, &probes, &alerts, true)), Tri::Unknown);
    }

    #[test]
    fn engine_eval_unknown_is_not_down_and_at_least_counts() {
        let sp = specs(&["trunk-a", "trunk-b", "trunk-c"]);
        let probes = vec![
            probe(ProbeHealth::Down, "timeout after 2s"),
            probe(ProbeHealth::Down, "503 Service Unavailable"),
            probe(ProbeHealth::Unknown, "timeout after 2s"),
        ];
        let alerts = BTreeMap::new();
        let ctx = Ctx {
            probe_specs: &sp,
            probes: &probes,
            alerts: &alerts,
            mask_probes: false,
        };
        let every = leaf(ProbeHealth::Down, "trunk-*", vec![0, 1, 2], None);
        assert_eq!(every.eval(&ctx), Tri::False, "unknown is not down");
        let two = leaf(ProbeHealth::Down, "trunk-*", vec![0, 1, 2], Some(2));
        assert_eq!(two.eval(&ctx), Tri::True);
        let mut out = Vec::new();
        two.explain(&ctx, &mut out);
        assert_eq!(
            out,
            vec![
                "2 of 3 probes matching \"trunk-*\" down (trunk-a: timeout after 2s; trunk-b: 503 Service Unavailable)"
            ]
        );
        let empty = leaf(ProbeHealth::Down, "none", vec![], None);
        assert_eq!(empty.eval(&ctx), Tri::False);
    }
}
