//! `GET /v1/events`: the audit log, newest first, filtered by age (`since`)
//! and kind (`kind`), with RFC 3339 times. `continuity-agent events` reads it.
//!
//! Filtering happens here, over the store's plain id-ordered pages, so every
//! backend serves the same filters without a query of its own. A scan stops
//! at `limit` matches, at the first record older than `since`, or after
//! [`SCAN_MAX`] records (then `next_before` lets the client go on): a rare
//! kind cannot make one request read the whole log.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::wire::{EventItem, EventsPage};
use super::{ApiError, AppState};
use crate::config::Dur;
use crate::config::schema::Scope;
use crate::domain::Timestamp;
use crate::store::Store;
use crate::telemetry::AuditKind;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// Records one request reads at most while filtering.
pub const SCAN_MAX: usize = 20_000;

#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub before: Option<i64>,
    /// A duration back from now (`1h`, `30m`) or an RFC 3339 time.
    #[serde(default)]
    pub since: Option<String>,
    /// Kinds, comma-separated (`decision,talkdesk`).
    #[serde(default)]
    pub kind: Option<String>,
}

/// A validated query.
#[derive(Debug, PartialEq)]
pub struct Filter {
    pub limit: usize,
    pub before: Option<i64>,
    pub since: Option<Timestamp>,
    pub kinds: Vec<AuditKind>,
}

impl Filter {
    pub fn parse(q: EventsQuery, now: Timestamp) -> Result<Filter, ApiError> {
        let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::Invalid(format!("limit must be 1 to {MAX_LIMIT}")));
        }
        let since = q.since.as_deref().map(|s| since(s, now)).transpose()?;
        let kinds = match q.kind.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|k| kind(k.trim()))
                .collect::<Result<_, _>>()?,
        };
        Ok(Filter {
            limit,
            before: q.before,
            since,
            kinds,
        })
    }

    fn matches(&self, kind: &AuditKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(kind)
    }
}

/// `1h` (back from `now`) or `2026-11-30T22:00:00Z`.
fn since(s: &str, now: Timestamp) -> Result<Timestamp, ApiError> {
    if let Ok(d) = s.parse::<Dur>() {
        return Ok(now.sub(d.get()));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| Timestamp::from_millis(t.timestamp_millis()))
        .map_err(|_| {
            ApiError::Invalid(format!(
                "since {s:?} is neither a duration (1h, 30m) nor an RFC 3339 time"
            ))
        })
}

fn kind(s: &str) -> Result<AuditKind, ApiError> {
    AuditKind::KNOWN
        .iter()
        .find(|k| k.as_str() == s)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = AuditKind::KNOWN.iter().map(AuditKind::as_str).collect();
            ApiError::Invalid(format!("unknown kind {s:?} (kinds: {})", known.join(", ")))
        })
}

pub async fn handler(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    events_of(s, headers, None, q).await
}

/// `GET /v1/accounts/{account}/events`: one account's audit log.
pub async fn account_handler(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    events_of(s, headers, Some(id), q).await
}

async fn events_of(
    s: AppState,
    headers: HeaderMap,
    id: Option<String>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, a) = super::api::authorized_account(&s, &headers, Scope::Read, id.as_deref())?;
    let Query(q) = q.map_err(|e| ApiError::Malformed(e.body_text()))?;
    let filter = Filter::parse(q, Timestamp::now())?;
    let page = page(&*a.store, &filter)
        .await
        .map_err(|e| ApiError::Overloaded {
            detail: format!("store: {e}"),
            retry_after_secs: 1,
        })?;
    Ok(Json(page).into_response())
}

/// Reads store pages until `filter.limit` records match, the log is older
/// than `since`, or [`SCAN_MAX`] records were read.
pub async fn page(
    store: &dyn Store,
    filter: &Filter,
) -> Result<EventsPage, crate::store::StoreError> {
    page_where(store, filter, SCAN_MAX, |_| true).await
}

/// [`page`] with one more condition on each record (the status page leaves
/// out routine Talkdesk reads), reading at most `scan_max` records.
pub async fn page_where(
    store: &dyn Store,
    filter: &Filter,
    scan_max: usize,
    keep: impl Fn(&crate::store::StoredEvent) -> bool,
) -> Result<EventsPage, crate::store::StoreError> {
    let batch = if filter.kinds.is_empty() {
        filter.limit
    } else {
        MAX_LIMIT
    };
    let mut events = Vec::new();
    let mut cursor = filter.before;
    let mut scanned = 0;
    loop {
        let got = store.events(batch, cursor).await?;
        let exhausted = got.len() < batch;
        for e in got {
            scanned += 1;
            cursor = Some(e.id);
            if filter.since.is_some_and(|since| e.record.at < since) {
                return Ok(EventsPage {
                    events,
                    next_before: None,
                });
            }
            if filter.matches(&e.record.kind) && keep(&e) {
                events.push(EventItem::from(e));
                if events.len() == filter.limit {
                    return Ok(EventsPage {
                        events,
                        next_before: cursor,
                    });
                }
            }
        }
        if exhausted {
            return Ok(EventsPage {
                events,
                next_before: None,
            });
        }
        if scanned >= scan_max {
            return Ok(EventsPage {
                events,
                next_before: cursor,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::telemetry::AuditRecord;

    fn q(since: Option<&str>, kind: Option<&str>) -> EventsQuery {
        EventsQuery {
            since: since.map(str::to_string),
            kind: kind.map(str::to_string),
            ..EventsQuery::default()
        }
    }

    #[test]
    fn since_is_a_duration_back_or_an_rfc3339_time() {
        let now = Timestamp::from_millis(10_000_000);
        let f = Filter::parse(q(Some("1h"), None), now).unwrap();
        assert_eq!(
            f.since,
            Some(Timestamp::from_millis(10_000_000 - 3_600_000))
        );
        let f = Filter::parse(q(Some("1970-01-01T00:00:01Z"), None), now).unwrap();
        assert_eq!(f.since, Some(Timestamp::from_millis(1000)));
        assert!(Filter::parse(q(Some("soon"), None), now).is_err());
    }

    #[test]
    fn kinds_are_known_audit_kinds() {
        let now = Timestamp::ZERO;
        let f = Filter::parse(q(None, Some("decision, talkdesk")), now).unwrap();
        assert_eq!(f.kinds, vec![AuditKind::Decision, AuditKind::Talkdesk]);
        let Err(ApiError::Invalid(why)) = Filter::parse(q(None, Some("nope")), now) else {
            panic!("accepted an unknown kind");
        };
        assert!(why.contains("decision") && why.contains("nope"), "{why}");
    }

    /// Matches are collected across store pages; the scan stops at `since`.
    #[tokio::test]
    async fn a_filtered_page_spans_store_pages_and_stops_at_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let mut records = Vec::new();
        for i in 0..2500 {
            let kind = if i % 1000 == 0 {
                AuditKind::Override
            } else {
                AuditKind::Probe
            };
            records.push(AuditRecord::new(
                Timestamp::from_millis(i),
                kind,
                format!("r{i}"),
            ));
        }
        store.append_audit(records).await.unwrap();
        let mut f = Filter::parse(q(None, Some("override")), Timestamp::ZERO).unwrap();
        let page = page(&store, &f).await.unwrap();
        let got: Vec<&str> = page
            .events
            .iter()
            .map(|e| e.record.message.as_str())
            .collect();
        assert_eq!(got, ["r2000", "r1000", "r0"]);
        assert_eq!(page.next_before, None);

        f.since = Some(Timestamp::from_millis(500));
        let page = page_of(&store, &f).await;
        assert_eq!(page, ["r2000", "r1000"]);
    }

    /// A look back with a condition few records meet stops after
    /// `scan_max` records, and says where to go on.
    #[tokio::test]
    async fn a_conditional_page_reads_at_most_scan_max_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).await.unwrap();
        let records = (0..3000)
            .map(|i| {
                AuditRecord::new(
                    Timestamp::from_millis(i),
                    AuditKind::Talkdesk,
                    format!("r{i}"),
                )
            })
            .collect();
        store.append_audit(records).await.unwrap();
        let f = Filter::parse(q(None, Some("talkdesk")), Timestamp::ZERO).unwrap();
        let page = page_where(&store, &f, 2000, |e| e.record.message == "r5")
            .await
            .unwrap();
        assert!(
            page.events.is_empty(),
            "r5 is further back than 2000 records"
        );
        let cursor = page.next_before.expect("a cursor to go on from");
        let rest = Filter {
            before: Some(cursor),
            ..f
        };
        let page = page_where(&store, &rest, 2000, |e| e.record.message == "r5")
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1);
    }

    async fn page_of(store: &SqliteStore, f: &Filter) -> Vec<String> {
        page(store, f)
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.record.message)
            .collect()
    }
}
