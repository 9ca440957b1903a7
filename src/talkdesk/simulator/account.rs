//! One simulated Talkdesk account: its credentials and everything it
//! remembers (state, tokens, pending faults, journal, quirks), so accounts
//! served by one simulator never see each other's.

use std::sync::{Arc, Mutex, MutexGuard};

use secrecy::SecretString;

use crate::domain::{FallbackSettings, Timestamp};

use super::faults::Faults;
use super::journal::Journal;
use super::state::Tokens;
use super::{Fault, FaultOp, JournalEntry, Quirks, SimAccount, SimState};

/// A poisoned lock only means a handler panicked mid-update of plain data;
/// the simulator keeps serving with whatever is there.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) struct AccountState {
    pub id: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub state: Mutex<SimState>,
    pub tokens: Mutex<Tokens>,
    pub faults: Mutex<Faults>,
    pub journal: Mutex<Journal>,
    pub quirks: Mutex<Quirks>,
    /// How many calls were journaled so far: benchmarks wait on it for the
    /// next call instead of polling the journal.
    pub journaled: tokio::sync::watch::Sender<u64>,
}

impl AccountState {
    pub fn new(a: SimAccount) -> AccountState {
        AccountState {
            id: a.id,
            client_id: a.client_id,
            client_secret: a.client_secret,
            state: Mutex::new(SimState::default()),
            tokens: Mutex::new(Tokens::default()),
            faults: Mutex::new(Faults::default()),
            journal: Mutex::new(Journal::default()),
            quirks: Mutex::new(Quirks::default()),
            journaled: tokio::sync::watch::Sender::new(0),
        }
    }

    pub fn record(&self, call: &Call, status: u16, fault: Option<&Fault>) {
        lock(&self.journal).push(JournalEntry {
            seq: 0,
            account: self.id.clone(),
            at: Timestamp::now().to_rfc3339(),
            method: call.method.clone(),
            path: call.path.clone(),
            op: call.op.as_str().to_string(),
            status,
            body: call.summary.clone(),
            user_agent: call.user_agent.clone(),
            instance: call.instance.clone(),
            fault: fault.map(Fault::label),
        });
        self.journaled.send_modify(|n| *n += 1);
    }
}

/// What the journal keeps of one API request.
pub(super) struct Call {
    pub method: String,
    pub path: String,
    pub op: FaultOp,
    pub user_agent: Option<String>,
    pub instance: Option<String>,
    pub summary: Option<String>,
}

/// One account of a [`super::Simulator`], to read and change as tests and
/// the control routes do; cheap to clone. The simulator's own methods of the
/// same names act on its first account.
#[derive(Clone)]
pub struct AccountHandle {
    pub(super) account: Arc<AccountState>,
}

impl AccountHandle {
    pub fn id(&self) -> &str {
        &self.account.id
    }

    pub fn client_id(&self) -> &str {
        &self.account.client_id
    }

    pub fn state(&self) -> SimState {
        lock(&self.account.state).clone()
    }

    /// Replace the state, as an operator editing the Talkdesk UI would.
    pub fn set_state(&self, s: SimState) {
        *lock(&self.account.state) = s;
    }

    pub fn set_enabled(&self, enabled: bool) {
        lock(&self.account.state).enabled = enabled;
    }

    pub fn set_settings(&self, settings: FallbackSettings) {
        lock(&self.account.state).settings = settings;
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        *lock(&self.account.quirks) = quirks;
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.account.faults).add(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.account.faults).clear();
    }

    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.account.faults).list()
    }

    /// Every token this account issued stops working at once (the next API
    /// call with one gets 401).
    pub fn expire_tokens(&self) {
        lock(&self.account.tokens).expire_all();
    }

    /// Every access token this account issued so far (the last thousand).
    /// For tests that prove tokens never reach logs or audit records.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.account.tokens).history()
    }

    /// The API calls made to this account, oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.account.journal).entries()
    }

    pub fn clear_journal(&self) {
        lock(&self.account.journal).clear();
    }

    /// Changes (to the number of calls journaled so far) as soon as a call
    /// is journaled: to time a call without polling the journal.
    pub fn journal_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.account.journaled.subscribe()
    }
}
