//! Who to wake when inputs arrive: the loops registered through
//! `Store::watch_inputs` on every handle of one store (all its accounts).
//!
//! One registry per opened store, shared by its `for_account` handles, so
//! a deployment of many accounts keeps one LISTEN connection (PostgreSQL)
//! and a shared append ([`SHARED_ACCOUNT`]) reaches every account's loop.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::inputs::SHARED_ACCOUNT;

#[derive(Default)]
pub(crate) struct Wakers {
    state: Mutex<State>,
    /// Told when a registration ends, so a listener can stop once none is left.
    changed: Notify,
}

#[derive(Default)]
struct State {
    subs: Vec<Sub>,
    next: u64,
    /// Whether a listener task runs for these (PostgreSQL only).
    listening: bool,
}

struct Sub {
    id: u64,
    account: String,
    wake: Arc<Notify>,
}

impl Wakers {
    /// Registers `wake` for `account` until `cancel` fires. Returns true when
    /// the caller must start a listener (none runs yet); it then owns
    /// `listening` until [`Wakers::stop_if_idle`] says otherwise.
    pub(crate) fn add(
        self: &Arc<Self>,
        account: &str,
        wake: Arc<Notify>,
        cancel: CancellationToken,
    ) -> bool {
        let (id, start) = {
            let mut state = self.lock();
            let id = state.next;
            state.next += 1;
            state.subs.push(Sub {
                id,
                account: account.to_string(),
                wake,
            });
            let start = !state.listening;
            state.listening = true;
            (id, start)
        };
        let this = self.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            this.lock().subs.retain(|s| s.id != id);
            this.changed.notify_one();
        });
        start
    }

    /// Wakes the loops of `account`; [`SHARED_ACCOUNT`] wakes every loop.
    pub(crate) fn wake(&self, account: &str) {
        for s in &self.lock().subs {
            if account == SHARED_ACCOUNT || s.account == account {
                s.wake.notify_one();
            }
        }
    }

    /// Wakes every loop (after a reconnection: notifications sent while
    /// disconnected are lost).
    pub(crate) fn wake_all(&self) {
        self.wake(SHARED_ACCOUNT);
    }

    /// Whether no registration is left; if so the listener must end, and
    /// the next [`Wakers::add`] starts a new one.
    pub(crate) fn stop_if_idle(&self) -> bool {
        let mut state = self.lock();
        if state.subs.is_empty() {
            state.listening = false;
            return true;
        }
        false
    }

    /// Resolves when a registration ends.
    pub(crate) async fn changed(&self) {
        self.changed.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing here can panic while holding it; a poisoned lock still
        // holds a consistent list.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn woken(n: &Notify) -> bool {
        tokio::time::timeout(Duration::from_millis(100), n.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn an_account_wakes_its_own_loops_and_the_shared_account_wakes_all() {
        let wakers = Arc::new(Wakers::default());
        let (a, b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let cancel = CancellationToken::new();
        assert!(
            wakers.add("acme", a.clone(), cancel.clone()),
            "first starts"
        );
        assert!(!wakers.add("globex", b.clone(), cancel.clone()));
        wakers.wake("acme");
        assert!(woken(&a).await);
        assert!(!woken(&b).await, "another account's append");
        wakers.wake(SHARED_ACCOUNT);
        assert!(woken(&a).await && woken(&b).await);

        cancel.cancel();
        for _ in 0..100 {
            if wakers.stop_if_idle() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(wakers.stop_if_idle(), "registrations end with their token");
        assert!(
            wakers.add("acme", a, CancellationToken::new()),
            "a new registration starts a new listener"
        );
    }
}
