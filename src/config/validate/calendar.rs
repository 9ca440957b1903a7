//! `[[maintenance]]` and `[[drills]]`: cron schedules and durations.

use std::collections::BTreeSet;
use std::time::Duration;

use super::shared::{duration_range, unknown_profile};
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn calendar(
    cx: &mut Cx,
    maint: &[MaintenanceConfig],
    drills: &[DrillConfig],
    profile_names: &BTreeSet<String>,
) {
    let mut seen = BTreeSet::new();
    for (i, m) in maint.iter().enumerate() {
        let key = format!("maintenance[{}] ({})", cx.index("maintenance", i), m.name);
        if !seen.insert(m.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate maintenance window {:?}", m.name),
            );
        }
        if let Err(why) = check_cron(&m.cron) {
            cx.err(format!("{key}.cron"), why);
        }
        duration_range(
            cx,
            &format!("{key}.duration"),
            m.duration.get(),
            Duration::from_secs(1),
            Duration::from_secs(7 * 24 * 3600),
        );
    }
    let mut seen = BTreeSet::new();
    for (i, d) in drills.iter().enumerate() {
        let key = format!("drills[{}] ({})", cx.index("drills", i), d.name);
        if !seen.insert(d.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate drill {:?}", d.name),
            );
        }
        if let Err(why) = check_cron(&d.cron) {
            cx.err(format!("{key}.cron"), why);
        }
        if !profile_names.contains(&d.profile) {
            cx.err(
                format!("{key}.profile"),
                unknown_profile(&d.profile, profile_names),
            );
        }
        duration_range(
            cx,
            &format!("{key}.duration"),
            d.duration.get(),
            Duration::from_secs(1),
            Duration::from_secs(24 * 3600),
        );
    }
}

/// 6 fields, seconds first, parsed exactly as tokio-cron-scheduler will.
fn check_cron(expr: &str) -> Result<(), String> {
    let n = expr.split_whitespace().count();
    if n != 6 {
        return Err(format!(
            "{expr:?} has {n} fields; write 6, seconds first (e.g. \"0 0 8 * * Sun\")"
        ));
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map(|_| ())
        .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))
}
