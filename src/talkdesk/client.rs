//! The Talkdesk Fallback Experience client: four calls, each bounded by a
//! timeout, measured, audited, and authenticated with a cached token that is
//! refreshed once when the API answers 401.
//!
//! The client never retries on its own (except the single token refresh):
//! retry policy belongs to the caller. The actuator retries forever with
//! backoff; the break-glass CLI retries a little and reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use secrecy::SecretString;

use super::auth::TokenSource;
use super::error::{ApiErrorBody, Op, TalkdeskError};
use super::observe::{CallOutcome, Observer};
use super::wire::{Activation, WireSettings};
use crate::backoff::parse_retry_after;
use crate::config::schema::TalkdeskConfig;
use crate::domain::{Actual, FallbackSettings};
use crate::telemetry::{AccountMetrics, AuditSink};

/// `User-Agent` of every request, so Talkdesk support can find our calls.
pub const USER_AGENT: &str = concat!("continuity-agent/", env!("CARGO_PKG_VERSION"));

/// Used when the config does not set one (the schema has its own default).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the client needs, resolved: URLs are absolute, the secret is
/// loaded. `Debug` shows `[REDACTED]` for the secret (secrecy).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `https://api.talkdeskapp.com`, no trailing slash.
    pub api_base: String,
    /// `https://{account}.talkdeskid.com/oauth/token`.
    pub token_url: String,
    pub scopes: Vec<String>,
    pub client_id: String,
    pub client_secret: SecretString,
    /// `/fallback-experience/settings`.
    pub settings_path: String,
    /// `/fallback-experience/activation`.
    pub activation_path: String,
    /// Bound of each request (token, settings, activation), body included.
    pub request_timeout: Duration,
    /// Sent on every request as `X-Continuity-Agent-Instance`, so Talkdesk's
    /// side (and the simulator's journal) shows which replica called.
    pub instance_id: String,
}

/// The header naming the calling instance.
pub const INSTANCE_HEADER: &str = "x-continuity-agent-instance";

/// API base per region (reference/talkdesk-api.md section 2).
pub fn region_api_base(region: &str) -> Option<&'static str> {
    match region {
        "us" => Some("https://api.talkdeskapp.com"),
        "eu" => Some("https://api.talkdeskapp.eu"),
        "ca" => Some("https://api.talkdeskappca.com"),
        _ => None,
    }
}

/// Token URL per region and account.
pub fn region_token_url(region: &str, account: &str) -> Option<String> {
    let host = match region {
        "us" => "talkdeskid.com",
        "eu" => "talkdeskid.eu",
        "ca" => "talkdeskidca.com",
        _ => return None,
    };
    Some(format!("https://{account}.{host}/oauth/token"))
}

impl ClientConfig {
    /// Build from the `[talkdesk]` section and the already loaded secret
    /// (the config loader reads `client_secret` or `client_secret_file`).
    /// Explicit `api_base` / `token_url` win over the region defaults.
    pub fn from_config(
        cfg: &TalkdeskConfig,
        client_secret: SecretString,
    ) -> Result<ClientConfig, TalkdeskError> {
        let region = cfg.region.trim().to_ascii_lowercase();
        let api_base = match &cfg.api_base {
            Some(b) => b.clone(),
            None => region_api_base(&region)
                .ok_or_else(|| {
                    TalkdeskError::Config(format!(
                        "talkdesk.region {:?} is not us, eu or ca; set talkdesk.api_base",
                        cfg.region
                    ))
                })?
                .to_string(),
        };
        let token_url = match (&cfg.token_url, &cfg.account) {
            (Some(u), _) => u.clone(),
            (None, Some(account)) => {
                if account.is_empty()
                    || !account
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    return Err(TalkdeskError::Config(format!(
                        "talkdesk.account {account:?} must be letters, digits and '-'"
                    )));
                }
                region_token_url(&region, account).ok_or_else(|| {
                    TalkdeskError::Config(format!(
                        "talkdesk.region {:?} is not us, eu or ca; set talkdesk.token_url",
                        cfg.region
                    ))
                })?
            }
            (None, None) => {
                return Err(TalkdeskError::Config(
                    "set talkdesk.account (or talkdesk.token_url)".into(),
                ));
            }
        };
        let client_id = cfg
            .client_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| TalkdeskError::Config("talkdesk.client_id is required".into()))?;
        let c = ClientConfig {
            api_base: api_base.trim_end_matches('/').to_string(),
            token_url,
            scopes: cfg.scopes.clone(),
            client_id,
            client_secret,
            settings_path: cfg.settings_path.clone(),
            activation_path: cfg.activation_path.clone(),
            request_timeout: cfg.request_timeout.get(),
            instance_id: crate::config::schema::defaults::instance_id(),
        };
        c.validate()?;
        Ok(c)
    }

    /// A config pointing at a simulator (tests, demo): `base` is `http://127.0.0.1:PORT`.
    pub fn for_simulator(base: &str, client_id: &str, client_secret: &str) -> ClientConfig {
        let base = base.trim_end_matches('/');
        ClientConfig {
            api_base: base.to_string(),
            token_url: format!("{base}/oauth/token"),
            scopes: crate::config::schema::defaults::scopes(),
            client_id: client_id.to_string(),
            client_secret: SecretString::from(client_secret.to_string()),
            settings_path: crate::config::schema::defaults::SETTINGS_PATH.to_string(),
            activation_path: crate::config::schema::defaults::ACTIVATION_PATH.to_string(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            instance_id: crate::config::schema::defaults::instance_id(),
        }
    }

    fn validate(&self) -> Result<(), TalkdeskError> {
        for (key, u) in [("api_base", &self.api_base), ("token_url", &self.token_url)] {
            let parsed = url::Url::parse(u)
                .map_err(|e| TalkdeskError::Config(format!("talkdesk.{key} {u:?}: {e}")))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(TalkdeskError::Config(format!(
                    "talkdesk.{key} {u:?} must be an http(s) URL"
                )));
            }
        }
        for (key, p) in [
            ("settings_path", &self.settings_path),
            ("activation_path", &self.activation_path),
        ] {
            if !p.starts_with('/') {
                return Err(TalkdeskError::Config(format!(
                    "talkdesk.{key} {p:?} must start with '/'"
                )));
            }
        }
        if self.request_timeout.is_zero() {
            return Err(TalkdeskError::Config(
                "talkdesk.request_timeout must be above 0".into(),
            ));
        }
        Ok(())
    }
}

/// Cheap to clone; clones share the token cache and the connection pool.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// Writes are fenced by the caller (several replicas): a write answered
    /// 401 is not sent again behind the fence's back; the token is dropped
    /// and the 401 returned, so the caller fences again before resending.
    fenced: bool,
}

struct Inner {
    http: reqwest::Client,
    auth: TokenSource,
    api_base: String,
    settings_path: String,
    activation_path: String,
    timeout: Duration,
    observer: Observer,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("api_base", &self.inner.api_base)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// The client the `[talkdesk]` section describes: the one way `run` and
    /// the break-glass commands build it, so both talk to Talkdesk alike.
    /// A loaded daemon configuration always has the secret; its absence is
    /// still a [`TalkdeskError::Config`], never an empty credential.
    /// `instance_id` names this process on every request (see
    /// [`ClientConfig::instance_id`]).
    pub fn from_config(
        cfg: &TalkdeskConfig,
        instance_id: &str,
        metrics: AccountMetrics,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Client, TalkdeskError> {
        let secret = cfg.client_secret.clone().ok_or_else(|| {
            TalkdeskError::Config(
                "talkdesk.client_secret is not set (set client_secret or client_secret_file)"
                    .into(),
            )
        })?;
        let config = ClientConfig {
            instance_id: instance_id.to_string(),
            ..ClientConfig::from_config(cfg, secret)?
        };
        Client::new(config, metrics, audit)
    }

    /// A client for an already resolved configuration (tests and the demo
    /// point one at the simulator with [`ClientConfig::for_simulator`]).
    pub fn new(
        config: ClientConfig,
        metrics: AccountMetrics,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Client, TalkdeskError> {
        config.validate()?;
        let mut builder = crate::tls::http_client_builder()
            .map_err(|e| TalkdeskError::Config(format!("cannot build HTTP client: {e}")))?;
        if is_loopback(&config.api_base) && is_loopback(&config.token_url) {
            // A simulator on this host: an HTTP(S)_PROXY from the environment
            // (needed to reach Talkdesk itself) must not capture it.
            builder = builder.no_proxy();
        }
        let instance =
            reqwest::header::HeaderValue::from_str(&config.instance_id).map_err(|_| {
                TalkdeskError::Config(format!(
                    "instance id {:?} cannot be sent as an HTTP header",
                    config.instance_id
                ))
            })?;
        let headers = reqwest::header::HeaderMap::from_iter([(
            reqwest::header::HeaderName::from_static(INSTANCE_HEADER),
            instance,
        )]);
        let http = builder
            .user_agent(USER_AGENT)
            .default_headers(headers)
            .connect_timeout(config.request_timeout)
            // A redirect from the API or the token endpoint is unexpected;
            // following it could send credentials somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| TalkdeskError::Config(format!("cannot build HTTP client: {e}")))?;
        let observer = Observer { metrics, audit };
        let auth = TokenSource::new(
            http.clone(),
            config.token_url,
            config.client_id,
            config.client_secret,
            config.scopes,
            config.request_timeout,
            observer.clone(),
        );
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                auth,
                api_base: config.api_base,
                settings_path: config.settings_path,
                activation_path: config.activation_path,
                timeout: config.request_timeout,
                observer,
            }),
            fenced: false,
        })
    }

    /// The same client for a caller that fences every write: on a 401 a
    /// write is not resent here (reads still refresh and retry once).
    pub fn fenced(&self) -> Client {
        Client {
            inner: self.inner.clone(),
            fenced: true,
        }
    }

    /// Makes sure a valid access token is cached (fetching one if needed),
    /// so the next call does not start with a token request. The actuator
    /// calls it before the write fence: the time between the fence's check
    /// and the write it allows is then only the write itself.
    pub async fn ready_token(&self) -> Result<(), TalkdeskError> {
        self.inner.auth.token().await.map(|_| ())
    }

    /// `GET {api_base}{settings_path}`.
    pub async fn get_settings(&self) -> Result<FallbackSettings, TalkdeskError> {
        let path = self.inner.settings_path.clone();
        let (status, body) = self.send(Op::GetSettings, Method::GET, &path, None).await?;
        // No body (e.g. 204) means nothing is configured yet.
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(FallbackSettings::default());
        }
        let wire: WireSettings = decode(Op::GetSettings, status, &body)?;
        Ok(wire.into())
    }

    /// `PUT {api_base}{settings_path}` with the whole settings (replace).
    ///
    /// Returns the settings as Talkdesk says it stored them, when the reply
    /// carries them (the documented 200 reply has the request's shape);
    /// `None` for an empty or different body. A write is never failed over
    /// an unexpected success body: the status is what counts.
    pub async fn put_settings(
        &self,
        settings: &FallbackSettings,
    ) -> Result<Option<FallbackSettings>, TalkdeskError> {
        let path = self.inner.settings_path.clone();
        let body = settings_body(settings);
        let (_, reply) = self
            .send(Op::PutSettings, Method::PUT, &path, Some(body))
            .await?;
        Ok(serde_json::from_slice::<WireSettings>(&reply)
            .ok()
            .filter(|w| w.forward.is_some() || w.message.is_some())
            .map(FallbackSettings::from))
    }

    /// `GET {api_base}{activation_path}` -> `{"enabled": bool}`.
    pub async fn get_activation(&self) -> Result<bool, TalkdeskError> {
        let path = self.inner.activation_path.clone();
        let (status, body) = self
            .send(Op::GetActivation, Method::GET, &path, None)
            .await?;
        let a: Activation = decode(Op::GetActivation, status, &body)?;
        Ok(a.enabled)
    }

    /// `PUT {api_base}{activation_path}` with `{"enabled": bool}`: a set,
    /// never a toggle. Returns what the reply says is stored, when it says
    /// (`{"enabled": bool}`); `None` when the reply has no such body (the
    /// caller reads it back).
    pub async fn set_activation(&self, enabled: bool) -> Result<Option<bool>, TalkdeskError> {
        let path = self.inner.activation_path.clone();
        let body = activation_body(enabled);
        let (_, reply) = self
            .send(Op::PutActivation, Method::PUT, &path, Some(body))
            .await?;
        Ok(serde_json::from_slice::<Activation>(&reply)
            .ok()
            .map(|a| a.enabled))
    }

    /// Activation and settings, read one after the other.
    pub async fn read_actual(&self) -> Result<Actual, TalkdeskError> {
        let enabled = self.get_activation().await?;
        let settings = self.get_settings().await?;
        Ok(Actual {
            enabled: Some(enabled),
            settings: Some(settings),
        })
    }

    /// Record a write that `dry_run` suppressed, exactly as it would be sent.
    /// Only writes are ever suppressed; other ops are ignored.
    pub fn audit_dry_run(&self, op: Op, request: serde_json::Value) {
        let path = match op {
            Op::PutSettings => &self.inner.settings_path,
            Op::PutActivation => &self.inner.activation_path,
            Op::GetSettings | Op::GetActivation | Op::Token => return,
        };
        let target = format!("{}{}", self.inner.api_base, path);
        self.inner.observer.dry_run(op, "PUT", &target, request);
    }

    /// One API call with the 401 refresh-once path. Returns status and body of
    /// a 2xx answer; everything else is an error.
    async fn send(
        &self,
        op: Op,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, bytes::Bytes), TalkdeskError> {
        let inner = &self.inner;
        let url = format!("{}{}", inner.api_base, path);
        let mut refreshed = false;
        loop {
            let token = inner.auth.token().await?;
            let started = Instant::now();
            let mut req = inner
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json")
                .timeout(inner.timeout);
            if let Some(b) = &body {
                req = req.json(b);
            }
            let record = |outcome: CallOutcome<'_>| {
                inner.observer.call(
                    op,
                    method.as_str(),
                    &url,
                    outcome,
                    started.elapsed(),
                    body.clone(),
                );
            };
            let Raw {
                status,
                retry_after,
                body: bytes,
            } = match exchange(req.send(), op, inner.timeout).await {
                Ok(raw) => raw,
                Err(err) => {
                    record(CallOutcome::Failed(&err));
                    return Err(err);
                }
            };
            if (200..300).contains(&status) {
                record(CallOutcome::Status(status, None));
                return Ok((status, bytes));
            }
            let err = TalkdeskError::Api {
                op,
                status,
                body: ApiErrorBody::parse(&bytes),
                retry_after,
            };
            record(CallOutcome::Status(status, Some(&err)));
            if status == 401 && !refreshed {
                // The token expired early or was revoked: drop exactly this
                // token, fetch a new one, and try once more. A fenced write
                // is not resent here: its fence covered one request only.
                inner.auth.invalidate(&token).await;
                if self.fenced && method != Method::GET {
                    tracing::info!(op = %op, "Talkdesk answered 401 to a fenced write; the token is dropped and the write goes back through the fence.");
                    return Err(err);
                }
                tracing::info!(op = %op, "Talkdesk answered 401; refreshing the token once.");
                refreshed = true;
                continue;
            }
            return Err(err);
        }
    }
}

/// A Talkdesk answer with its body read.
pub(super) struct Raw {
    pub status: u16,
    pub retry_after: Option<std::time::Duration>,
    pub body: bytes::Bytes,
}

/// Sends a request and reads its answer; transport failures (connect,
/// timeout, a connection dropped mid-body) become typed, retryable errors.
pub(super) async fn exchange(
    sent: impl std::future::Future<Output = reqwest::Result<reqwest::Response>>,
    op: Op,
    timeout: std::time::Duration,
) -> Result<Raw, TalkdeskError> {
    let resp = sent.await.map_err(|e| transport_error(op, &e, timeout))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = resp
        .bytes()
        .await
        .map_err(|e| transport_error(op, &e, timeout))?;
    Ok(Raw {
        status,
        retry_after,
        body,
    })
}

fn is_loopback(u: &str) -> bool {
    match url::Url::parse(u).ok().as_ref().and_then(url::Url::host) {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The JSON body of a settings PUT.
pub fn settings_body(settings: &FallbackSettings) -> serde_json::Value {
    serde_json::to_value(WireSettings::from(settings)).unwrap_or(serde_json::Value::Null)
}

/// The JSON body of an activation PUT.
pub fn activation_body(enabled: bool) -> serde_json::Value {
    serde_json::json!({ "enabled": enabled })
}

fn decode<T: serde::de::DeserializeOwned>(
    op: Op,
    status: u16,
    body: &[u8],
) -> Result<T, TalkdeskError> {
    serde_json::from_slice(body).map_err(|e| TalkdeskError::Decode {
        op,
        status,
        detail: format!(
            "{e}; body: {}",
            super::error::shorten(&String::from_utf8_lossy(body), 200)
        ),
    })
}

/// Classify a reqwest failure. The message walks the source chain because
/// the useful part ("connection closed before message completed") is deep.
pub(crate) fn transport_error(op: Op, e: &reqwest::Error, timeout: Duration) -> TalkdeskError {
    if e.is_timeout() {
        return TalkdeskError::Timeout { op, timeout };
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    TalkdeskError::Connection { op, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::Dur;

    fn metrics() -> AccountMetrics {
        crate::telemetry::Metrics::new().account(crate::config::DEFAULT_ACCOUNT)
    }

    fn cfg() -> TalkdeskConfig {
        TalkdeskConfig {
            account: Some("acme".into()),
            client_id: Some("id".into()),
            ..TalkdeskConfig::default()
        }
    }

    #[test]
    fn urls_derive_from_region_and_account() {
        for (region, api, token) in [
            (
                "us",
                "https://api.talkdeskapp.com",
                "https://acme.talkdeskid.com/oauth/token",
            ),
            (
                "eu",
                "https://api.talkdeskapp.eu",
                "https://acme.talkdeskid.eu/oauth/token",
            ),
            (
                "ca",
                "https://api.talkdeskappca.com",
                "https://acme.talkdeskidca.com/oauth/token",
            ),
        ] {
            let c = ClientConfig::from_config(
                &TalkdeskConfig {
                    region: region.into(),
                    ..cfg()
                },
                SecretString::from("s"),
            )
            .unwrap();
            assert_eq!(c.api_base, api);
            assert_eq!(c.token_url, token);
        }
    }

    #[test]
    fn explicit_urls_win_and_bad_input_is_reported() {
        let c = ClientConfig::from_config(
            &TalkdeskConfig {
                region: "xx".into(),
                account: None,
                api_base: Some("http://127.0.0.1:9/".into()),
                token_url: Some("http://127.0.0.1:9/oauth/token".into()),
                request_timeout: Dur::from_millis(500),
                ..cfg()
            },
            SecretString::from("s"),
        )
        .unwrap();
        assert_eq!(c.api_base, "http://127.0.0.1:9");
        assert_eq!(c.request_timeout, Duration::from_millis(500));

        let no_account = TalkdeskConfig {
            account: None,
            ..cfg()
        };
        assert!(ClientConfig::from_config(&no_account, SecretString::from("s")).is_err());
        let bad_region = TalkdeskConfig {
            region: "mars".into(),
            ..cfg()
        };
        assert!(ClientConfig::from_config(&bad_region, SecretString::from("s")).is_err());
        let no_id = TalkdeskConfig {
            client_id: None,
            ..cfg()
        };
        assert!(ClientConfig::from_config(&no_id, SecretString::from("s")).is_err());
        let bad_path = TalkdeskConfig {
            settings_path: "settings".into(),
            ..cfg()
        };
        assert!(ClientConfig::from_config(&bad_path, SecretString::from("s")).is_err());
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("http://127.0.0.1:8080"));
        assert!(is_loopback("http://[::1]:8080/oauth/token"));
        assert!(is_loopback("http://localhost:1"));
        assert!(!is_loopback("https://api.talkdeskapp.com"));
    }

    #[test]
    fn from_config_needs_the_secret_and_never_substitutes_one() {
        let audit: Arc<dyn AuditSink> = Arc::new(crate::telemetry::audit::NoAudit);
        let err = Client::from_config(&cfg(), "test", metrics(), audit.clone()).unwrap_err();
        assert!(matches!(&err, TalkdeskError::Config(m) if m.contains("talkdesk.client_secret")));
        let with_secret = TalkdeskConfig {
            client_secret: Some(SecretString::from("hunter2-very-secret")),
            ..cfg()
        };
        let client = Client::from_config(&with_secret, "test", metrics(), audit.clone()).unwrap();
        assert_eq!(client.inner.api_base, "https://api.talkdeskapp.com");
        // Errors of the config part come through unchanged.
        let no_id = TalkdeskConfig {
            client_id: None,
            ..with_secret
        };
        let err = Client::from_config(&no_id, "test", metrics(), audit).unwrap_err();
        assert!(matches!(&err, TalkdeskError::Config(m) if m.contains("client_id")));
    }

    #[test]
    fn config_debug_redacts_the_secret() {
        let c =
            ClientConfig::from_config(&cfg(), SecretString::from("hunter2-very-secret")).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }
}
