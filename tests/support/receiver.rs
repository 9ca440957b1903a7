//! A local HTTP receiver for notifications (a stand-in for Slack, Teams,
//! PagerDuty or any webhook) on 127.0.0.1: it records every request (path,
//! headers, raw body) when it arrives and answers each path as told: a
//! script of statuses (then 200), or never (a hung receiver).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use tokio::time::Instant;

/// One request as it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// How a path answers.
#[derive(Clone, Debug)]
pub enum Answer {
    /// These statuses, one per request, then 200.
    Script(VecDeque<u16>),
    /// Never: the request hangs until the client gives up.
    Hang,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Received>,
    answers: BTreeMap<String, Answer>,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new().fallback(record).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, inner }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer requests to `path` this way from now on.
    pub fn answer(&self, path: &str, answer: Answer) {
        self.inner
            .lock()
            .unwrap()
            .answers
            .insert(path.to_string(), answer);
    }

    /// Every request to `path` so far, oldest first.
    pub fn at(&self, path: &str) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has seen at least `n` requests; returns them all.
    pub async fn wait_for(&self, path: &str, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.at(path);
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: {} request(s) within {within:?}, expected {n}: {seen:#?}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn record(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_string();
    let answer = {
        let mut inner = inner.lock().unwrap();
        inner.seen.push(Received {
            path: path.clone(),
            headers,
            body,
        });
        match inner.answers.get_mut(&path) {
            Some(Answer::Script(statuses)) => Some(statuses.pop_front().unwrap_or(200)),
            Some(Answer::Hang) => None,
            None => Some(200),
        }
    };
    match answer {
        Some(status) => StatusCode::from_u16(status).unwrap(),
        None => std::future::pending().await,
    }
}
