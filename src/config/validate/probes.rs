//! `[[probes]]`: the glue to the probe types, which validate their own
//! entries (`probe::ProbeConfig::validate`).

use std::collections::BTreeSet;
use std::path::Path;

use super::shared::IDENT;
use crate::config::load::Cx;
use crate::config::schema::*;
use crate::probe::{Findings, ProbeSettings};

/// Each entry checks itself (`probe::ProbeConfig::validate`); what needs
/// the whole list (unique ids) is checked here.
pub(super) fn probes(cx: &mut Cx, raw: &[ProbeConfig], base: &Path) -> Vec<ProbeSettings> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let id = &p.common.id;
        let key = format!("probes[{}] ({id})", cx.index("probes", i));
        if !IDENT.is_match(id) {
            cx.err(format!("{key}.id"), "must be 1-64 letters, digits, '.', '_' or '-' (it is used in metrics labels and globs)");
        }
        if !seen.insert(id.clone()) {
            cx.err(format!("{key}.id"), format!("duplicate probe id {id:?}"));
        }
        let mut found = Findings::default();
        let settings = p.validate_at(base, &mut found);
        for f in found.errors {
            cx.err(format!("{key}.{}", f.key), f.reason);
        }
        for f in found.warnings {
            cx.warn(format!("{key}.{}", f.key), f.reason);
        }
        out.extend(settings);
    }
    out
}
