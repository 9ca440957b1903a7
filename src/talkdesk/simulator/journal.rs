//! Every API call the simulator served, in order, so tests can assert what
//! the client did (how many token requests, which PUTs, in which order).
//! Control routes (`/_sim/...`) are not journaled.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Increases by one per entry, from 1.
    pub seq: u64,
    /// The simulated account that served the call (`default` for a
    /// single-account simulator). Sequence numbers count per account.
    #[serde(default)]
    pub account: String,
    /// RFC 3339 time the response was decided.
    pub at: String,
    pub method: String,
    pub path: String,
    /// `token`, `get_settings`, `put_settings`, `get_activation`, `put_activation`.
    pub op: String,
    /// HTTP status sent; 0 when the connection was dropped without a response.
    pub status: u16,
    /// Short summary of the request body (never credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The client's `User-Agent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The calling replica's `X-Continuity-Agent-Instance` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The injected fault that shaped this answer, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
}

impl JournalEntry {
    pub fn is_write(&self) -> bool {
        self.method == "PUT" || (self.method == "POST" && self.op != "token")
    }
}

#[derive(Default)]
pub(crate) struct Journal {
    entries: Vec<JournalEntry>,
    next_seq: u64,
}

/// Old entries are dropped past this many, so a long-running demo stays bounded.
const MAX_ENTRIES: usize = 10_000;

impl Journal {
    pub fn push(&mut self, mut e: JournalEntry) {
        self.next_seq += 1;
        e.seq = self.next_seq;
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push(e);
    }

    pub fn entries(&self) -> Vec<JournalEntry> {
        self.entries.clone()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
