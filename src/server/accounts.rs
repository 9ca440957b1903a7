//! The Talkdesk accounts as the API reaches them: each has its own loop
//! (`control`), input queue, actuator status, store rows and view of the
//! configuration (its profiles). Routes under `/v1/accounts/{id}/` act on
//! one; the routes without an account act on the default one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;

use super::ApiError;
use super::control::Control;
use crate::config::{Config, DEFAULT_ACCOUNT};
use crate::store::Store;
use crate::store::inputs::Queue;
use crate::talkdesk::actuator::ActuatorHandle;

/// One account's handles.
#[derive(Clone)]
pub struct AccountApi {
    pub id: String,
    /// The account's view of the configuration (`Config::for_account`): its
    /// profiles are what an override may name.
    pub config: Arc<Config>,
    /// The account's rows (audit log, snapshot).
    pub store: Arc<dyn Store>,
    /// The account's loop.
    pub control: mpsc::Sender<Control>,
    /// Where operator changes for this account go, durably, before the answer.
    pub queue: Queue,
    /// The account's actuator status, read (never driven) by answers that
    /// report what Talkdesk did.
    pub actuator: ActuatorHandle,
    /// Set once the account's loop has restored its state and written its
    /// first snapshot (or knows it follows).
    pub ready: Arc<AtomicBool>,
}

impl AccountApi {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Every account, in configuration order.
pub struct Accounts {
    list: Vec<AccountApi>,
}

impl Accounts {
    pub fn new(list: Vec<AccountApi>) -> Accounts {
        Accounts { list }
    }

    pub fn iter(&self) -> impl Iterator<Item = &AccountApi> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The account named `id`: 404 when there is none.
    pub fn get(&self, id: &str) -> Result<&AccountApi, ApiError> {
        self.list
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("no account {id:?} is configured")))
    }

    /// What the routes without an account act on: the only account, or the
    /// one named `default`. With several accounts and none named so, they
    /// answer 404 and name the per-account routes.
    pub fn default_account(&self) -> Result<&AccountApi, ApiError> {
        if let [only] = self.list.as_slice() {
            return Ok(only);
        }
        self.list
            .iter()
            .find(|a| a.id == DEFAULT_ACCOUNT)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "several accounts are configured ({}) and none is named {DEFAULT_ACCOUNT:?}: use /v1/accounts/{{id}}/...",
                    self.ids().join(", ")
                ))
            })
    }

    pub fn ids(&self) -> Vec<String> {
        self.list.iter().map(|a| a.id.clone()).collect()
    }
}
