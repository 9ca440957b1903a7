//! PromQL in alert rules and dashboards names only metrics that exist: the
//! agent's own registry (`Metrics::names`, the one list of what the binary
//! exports) plus `up`, which Prometheus records for every scrape.

use promql_parser::parser::{self, Expr};

/// Grafana's built-in interval variables, as a query would receive them.
const GRAFANA_VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "1m"),
    ("$__interval", "30s"),
    ("$__range", "1h"),
];

/// The series names an expression selects; panics on a syntax error.
pub fn selected(origin: &str, expr: &str) -> Vec<String> {
    let mut text = expr.to_string();
    for (var, value) in GRAFANA_VARIABLES {
        text = text.replace(var, value);
    }
    let ast =
        parser::parse(&text).unwrap_or_else(|e| panic!("{origin}: invalid PromQL {expr:?}: {e}"));
    let mut names = Vec::new();
    walk(origin, &ast, &mut names);
    names
}

fn walk(origin: &str, e: &Expr, out: &mut Vec<String>) {
    match e {
        Expr::Aggregate(a) => {
            walk(origin, &a.expr, out);
            if let Some(p) = &a.param {
                walk(origin, p, out);
            }
        }
        Expr::Unary(u) => walk(origin, &u.expr, out),
        Expr::Binary(b) => {
            walk(origin, &b.lhs, out);
            walk(origin, &b.rhs, out);
        }
        Expr::Paren(p) => walk(origin, &p.expr, out),
        Expr::Subquery(s) => walk(origin, &s.expr, out),
        Expr::VectorSelector(v) => out.push(
            v.name
                .clone()
                .unwrap_or_else(|| panic!("{origin}: name the metric in {e}")),
        ),
        Expr::MatrixSelector(m) => out.push(
            m.vs.name
                .clone()
                .unwrap_or_else(|| panic!("{origin}: name the metric in {e}")),
        ),
        Expr::Call(c) => c.args.args.iter().for_each(|a| walk(origin, a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Panics unless every series `expr` selects is exported by the agent (or is `up`).
pub fn check(origin: &str, expr: &str) {
    let metrics = continuity_agent::telemetry::Metrics::new();
    let known = metrics.names();
    for name in selected(origin, expr) {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| known.iter().any(|k| k == base))
            })
            .unwrap_or(&name);
        assert!(
            family == "up" || known.iter().any(|k| k == family),
            "{origin}: {expr:?} selects {name}, which the agent does not export (known: {known:?})"
        );
    }
}

#[test]
fn unknown_metrics_and_bad_syntax_are_caught() {
    assert_eq!(
        selected(
            "t",
            "sum by (probe) (rate(continuity_probe_results_total{result=\"failure\"}[$__rate_interval])) / on() group_left up"
        ),
        ["continuity_probe_results_total", "up"]
    );
    check(
        "t",
        "histogram_quantile(0.9, sum by (le) (rate(continuity_probe_duration_seconds_bucket[5m])))",
    );
    let msg = super::panic_message(|| check("t", "rate(continuity_probes_total[5m])"));
    assert!(
        msg.contains("continuity_probes_total, which the agent does not export"),
        "{msg}"
    );
    let msg = super::panic_message(|| check("t", "process_cpu_seconds_total > 1"));
    assert!(msg.contains("process_cpu_seconds_total"), "{msg}");
    let msg = super::panic_message(|| check("t", "continuity_leader =="));
    assert!(msg.contains("invalid PromQL"), "{msg}");
}
