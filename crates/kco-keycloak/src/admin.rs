//! The authenticated Admin API client of one Keycloak instance.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Error, ErrorKind};
use crate::memo::Memo;
use crate::metrics::RequestMetrics;

/// How kco authenticates to the Admin API.
pub enum AdminCredentials {
    /// A user of the admin realm, through the `admin-cli` client (password grant).
    Password { username: String, password: SecretString },
    /// A service-account client of the admin realm (client-credentials grant).
    ClientCredentials { client_id: String, client_secret: SecretString },
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AdminCredentials::Password { username, .. } => {
                f.debug_struct("Password").field("username", username).finish_non_exhaustive()
            }
            AdminCredentials::ClientCredentials { client_id, .. } => {
                f.debug_struct("ClientCredentials").field("client_id", client_id).finish_non_exhaustive()
            }
        }
    }
}

#[derive(Debug)]
pub struct KeycloakAdminConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080` (no `/admin`).
    pub url: String,
    /// Realm the credentials belong to (usually `master`).
    pub admin_realm: String,
    pub credentials: AdminCredentials,
    /// Extra PEM CA certificates to trust.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

struct CachedToken {
    access_token: SecretString,
    refresh_at: Instant,
}

/// Admin API client. Cheap to share behind an `Arc`; the token is fetched once and refreshed before
/// it expires (or after a 401), never per request.
pub struct KeycloakAdmin {
    http: reqwest::Client,
    base: Url,
    admin_realm: String,
    credentials: AdminCredentials,
    token: Mutex<Option<CachedToken>>,
    metrics: RequestMetrics,
    memo: Memo,
    /// A connection to Keycloak was refused (or could not be opened) since its last answer.
    refused: AtomicBool,
    /// Keycloak answered again after refusing connections (or restarted), and that was not reported
    /// yet: see [`KeycloakAdmin::take_comeback`]. Kept until it can be reported, not dropped. The
    /// bits of [`Comeback`] that were seen.
    came_back: AtomicU8,
    /// When the last comeback was reported, to report at most one per [`COMEBACK_INTERVAL`].
    last_comeback: std::sync::Mutex<Option<Instant>>,
    /// The start times [`KeycloakAdmin::server_info`] has seen (a new one is a restart).
    starts: std::sync::Mutex<crate::starts::Starts>,
    /// Whether a server info without an uptime was logged already (once per admin client).
    no_uptime_logged: AtomicBool,
}

impl std::fmt::Debug for KeycloakAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeycloakAdmin")
            .field("base", &self.base.as_str())
            .field("admin_realm", &self.admin_realm)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// Why kco holds that a Keycloak came back (see [`KeycloakAdmin::take_comeback`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comeback {
    /// Its uptime shows a start kco had not seen: it restarted.
    Restarted = 1,
    /// It answered after refusing connections (and no new start was seen).
    AnsweredAgain = 2,
}

impl Comeback {
    /// The metric label: `restarted` or `answered_again`.
    pub fn as_str(self) -> &'static str {
        match self {
            Comeback::Restarted => "restarted",
            Comeback::AnsweredAgain => "answered_again",
        }
    }
}

/// At most one comeback (see [`KeycloakAdmin::take_comeback`]) per this long.
pub const COMEBACK_INTERVAL: Duration = Duration::from_secs(60);

/// Refresh this long before the token's own expiry so no request goes out with a dying token.
const TOKEN_SLACK: Duration = Duration::from_secs(15);

/// Keycloak's URL `url` parsed as the admin client uses it (normalized, no trailing slash).
fn parse_base(url: &str) -> Result<Url, Error> {
    let base = Url::parse(url.trim_end_matches('/'))
        .map_err(|e| Error::new(ErrorKind::BadRequest, "parse Keycloak URL", format!("{url:?}: {e}")))?;
    if base.cannot_be_a_base() {
        return Err(Error::new(ErrorKind::BadRequest, "parse Keycloak URL", "not an http(s) URL"));
    }
    Ok(base)
}

/// The string [`KeycloakAdmin::base_url`] gives for an admin client built from `url`, without building
/// one (the operator keys its per-instance gate by it).
pub fn base_url_of(url: &str) -> Result<String, Error> {
    Ok(parse_base(url)?.as_str().trim_end_matches('/').to_string())
}

impl KeycloakAdmin {
    pub fn new(config: KeycloakAdminConfig, metrics: RequestMetrics) -> Result<Self, Error> {
        let base = parse_base(&config.url)?;
        let mut builder = reqwest::Client::builder().timeout(config.timeout).connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &config.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::new(ErrorKind::BadRequest, "read CA bundle", e.to_string()))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| Error::new(ErrorKind::Protocol, "build HTTP client", e.to_string()))?;
        Ok(Self {
            http,
            base,
            admin_realm: config.admin_realm,
            credentials: config.credentials,
            token: Mutex::new(None),
            metrics,
            memo: Memo::default(),
            refused: AtomicBool::new(false),
            came_back: AtomicU8::new(0),
            last_comeback: std::sync::Mutex::new(None),
            starts: std::sync::Mutex::new(crate::starts::Starts::default()),
            no_uptime_logged: AtomicBool::new(false),
        })
    }

    /// Whether Keycloak answered again after it could not be connected to (its process was down:
    /// restarted, or restored from a backup) since the last call; `true` once per such comeback. A
    /// Keycloak that comes back may have lost writes it acknowledged just before (a database that had
    /// not flushed them), so the operator then re-reads every client. Neither a reset or a timeout on
    /// an open connection nor a connect timeout (an overloaded Keycloak dropping connections) counts,
    /// and at most one comeback is reported per [`COMEBACK_INTERVAL`], so a flapping network cannot
    /// make the operator re-read everything again and again.
    ///
    /// A comeback noted within the interval of the last one reported is reported once the interval
    /// has passed (at a later call), not forgotten. Several make one, [`Comeback::Restarted`] when
    /// any of them was a restart.
    pub fn take_comeback(&self) -> Option<Comeback> {
        if self.came_back.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let Ok(mut last) = self.last_comeback.lock() else { return None };
        if last.is_some_and(|t| t.elapsed() < COMEBACK_INTERVAL) {
            return None;
        }
        *last = Some(Instant::now());
        let seen = self.came_back.swap(0, Ordering::Relaxed);
        Some(if seen & Comeback::Restarted as u8 != 0 { Comeback::Restarted } else { Comeback::AnsweredAgain })
    }

    /// Keep what `earlier`, the admin client this one replaces (new credentials or CA bundle for the
    /// same Keycloak), knew about Keycloak's starts and comebacks: a Keycloak restarted at the same
    /// moment its admin Secret was rotated (a common pairing) is then still noticed. Nothing is kept
    /// when the URL changed.
    pub fn inherit(&self, earlier: &KeycloakAdmin) {
        if self.base != earlier.base {
            return;
        }
        if earlier.refused.load(Ordering::Relaxed) {
            self.refused.store(true, Ordering::Relaxed);
        }
        self.came_back.fetch_or(earlier.came_back.load(Ordering::Relaxed), Ordering::Relaxed);
        if let (Ok(mut mine), Ok(theirs)) = (self.last_comeback.lock(), earlier.last_comeback.lock()) {
            *mine = *theirs;
        }
        if let (Ok(mut mine), Ok(theirs)) = (self.starts.lock(), earlier.starts.lock()) {
            *mine = theirs.clone();
        }
    }

    /// Note the outcome of sending one request: whether Keycloak answered.
    fn note_send<T>(&self, sent: &Result<T, reqwest::Error>) {
        match sent {
            Ok(_) => {
                if self.refused.swap(false, Ordering::Relaxed) {
                    self.note_comeback(Comeback::AnsweredAgain);
                }
            }
            Err(e) if e.is_connect() && !e.is_timeout() => self.refused.store(true, Ordering::Relaxed),
            Err(_) => {}
        }
    }

    /// Report a comeback at the next [`KeycloakAdmin::take_comeback`] (or, when one was reported
    /// within [`COMEBACK_INTERVAL`], at the first one after it). Several make one.
    fn note_comeback(&self, why: Comeback) {
        self.came_back.fetch_or(why as u8, Ordering::Relaxed);
    }

    pub fn base_url(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// The Admin API URL of `segments`, each percent-encoded as one path segment. A segment that
    /// would leave its place (`.`, `..`, which URL resolution folds away: `realms/../master` is
    /// `master`), an empty one, or one with control characters (which URL parsing drops) is refused
    /// before any request, whatever a spec let through: no name can reach another realm's API.
    fn url(&self, segments: &[&str]) -> Result<Url, Error> {
        if let Some(bad) = segments.iter().find(|s| !is_plain_segment(s)) {
            return Err(Error::new(
                ErrorKind::BadRequest,
                format!("Admin API path {:?}", segments.join("/")),
                format!(
                    "the name {bad:?} cannot be used in Keycloak's Admin API (not empty, \".\" or \"..\", no control characters); rename it"
                ),
            ));
        }
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        Ok(url)
    }

    async fn access_token(&self, force: bool) -> Result<SecretString, Error> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref()
            && !force
            && Instant::now() < t.refresh_at
        {
            return Ok(t.access_token.clone());
        }
        let url = self.url(&["realms", &self.admin_realm, "protocol", "openid-connect", "token"])?;
        let form: Vec<(&str, &str)> = match &self.credentials {
            AdminCredentials::Password { username, password } => vec![
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", username),
                ("password", password.expose_secret()),
            ],
            AdminCredentials::ClientCredentials { client_id, client_secret } => vec![
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_secret", client_secret.expose_secret()),
            ],
        };
        self.metrics.inc("POST", "token");
        let what = "obtain admin token".to_string();
        let sent = self.http.post(url).form(&form).send().await;
        self.note_send(&sent);
        let resp = sent.map_err(|e| transport(what.clone(), &e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.text().await.map_err(|e| transport(what.clone(), &e))?;
        if !status.is_success() {
            // The token endpoint answers 400/401 invalid_grant for bad credentials: report as 401.
            let code = if status == StatusCode::BAD_REQUEST { 401 } else { status.as_u16() };
            return Err(Error::from_status(code, what, &body).with_retry_after(retry_after(&headers)));
        }
        let v: Value =
            serde_json::from_str(&body).map_err(|e| Error::new(ErrorKind::Decode, what.clone(), e.to_string()))?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::new(ErrorKind::Protocol, what.clone(), "no access_token in the answer"))?;
        let expires_in = v.get("expires_in").and_then(Value::as_u64).unwrap_or(60);
        let lifetime = Duration::from_secs(expires_in);
        let refresh_at = Instant::now() + lifetime.saturating_sub(TOKEN_SLACK).max(lifetime / 2);
        let access_token = SecretString::from(token.to_string());
        *cached = Some(CachedToken { access_token: access_token.clone(), refresh_at });
        Ok(access_token)
    }

    /// Send one request to `/admin/realms/<segments>`; see [`Self::request`].
    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        kind: &str,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String), Error> {
        let mut path = vec!["admin", "realms"];
        path.extend_from_slice(segments);
        self.request(method, &path, query, body, kind).await
    }

    /// Send one Admin API request; `kind` labels the metric. Retries once with a fresh token on 401.
    async fn request(
        &self,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
        kind: &str,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, String), Error> {
        let url = self.url(path)?;
        let what = format!("{method} {}", url.path());
        let mut force = false;
        loop {
            let token = self.access_token(force).await?;
            let mut req = self.http.request(method.clone(), url.clone()).bearer_auth(token.expose_secret());
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            self.metrics.inc(method.as_str(), kind);
            let sent = req.send().await;
            self.note_send(&sent);
            let resp = sent.map_err(|e| transport(what.clone(), &e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !force {
                force = true;
                continue;
            }
            let headers = resp.headers().clone();
            let text = resp.text().await.map_err(|e| transport(what.clone(), &e))?;
            if !status.is_success() {
                return Err(Error::from_status(status.as_u16(), what, &text).with_retry_after(retry_after(&headers)));
            }
            return Ok((status, headers, text));
        }
    }

    pub async fn get(&self, segments: &[&str], query: &[(&str, &str)], kind: &str) -> Result<Value, Error> {
        let (_, _, text) = self.send(Method::GET, segments, query, None, kind).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Decode, format!("GET {kind}"), e.to_string()))
    }

    /// GET, read straight into `T` (only the fields `T` names are kept: a long list costs little).
    pub async fn get_as<T: serde::de::DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        kind: &str,
    ) -> Result<T, Error> {
        let (_, _, text) = self.send(Method::GET, segments, query, None, kind).await?;
        serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Decode, format!("GET {kind}"), e.to_string()))
    }

    /// POST; returns the id at the end of the `Location` header when Keycloak sends one, else the body.
    pub async fn post(&self, segments: &[&str], body: &Value, kind: &str) -> Result<PostResult, Error> {
        let (_, headers, text) = self.send(Method::POST, segments, &[], Some(body), kind).await?;
        let created_id = headers
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
            .map(str::to_string);
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) };
        Ok(PostResult { created_id, body })
    }

    pub async fn put(&self, segments: &[&str], body: &Value, kind: &str) -> Result<(), Error> {
        self.send(Method::PUT, segments, &[], Some(body), kind).await.map(|_| ())
    }

    pub async fn delete(&self, segments: &[&str], body: Option<&Value>, kind: &str) -> Result<(), Error> {
        self.send(Method::DELETE, segments, &[], body, kind).await.map(|_| ())
    }

    // ---- typed helpers for the calls kco makes on every reconcile --------------------------------

    /// Whether a realm exists (GET, 404 → false).
    pub async fn realm_exists(&self, realm: &str) -> Result<bool, Error> {
        match self.get(&[realm], &[], "realm").await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn create_realm(&self, realm: &str) -> Result<(), Error> {
        let body = serde_json::json!({ "realm": realm, "enabled": true });
        self.send(Method::POST, &[], &[], Some(&body), "realm").await.map(|_| ())
    }

    /// Look a client up by its clientId (exact match, one request, never a full listing).
    /// `Ok(None)` when the realm has no such client; a missing realm is an error of kind NotFound.
    pub async fn find_client(&self, realm: &str, client_id: &str) -> Result<Option<Value>, Error> {
        let v = self.get(&[realm, "clients"], &[("clientId", client_id)], "client").await?;
        Ok(v.as_array()
            .and_then(|a| a.iter().find(|c| c.get("clientId").and_then(Value::as_str) == Some(client_id)).cloned()))
    }

    /// GET a client by internal id; `Ok(None)` on 404.
    pub async fn get_client(&self, realm: &str, id: &str) -> Result<Option<Value>, Error> {
        match self.get(&[realm, "clients", id], &[], "client").await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Create a client; returns its internal id.
    pub async fn create_client(&self, realm: &str, rep: &Value) -> Result<String, Error> {
        let r = self.post(&[realm, "clients"], rep, "client").await?;
        #[cfg(feature = "fault-injection")]
        lose_create_response()?;
        r.created_id.ok_or_else(|| Error::new(ErrorKind::Protocol, "create client", "no Location header in the answer"))
    }

    pub async fn update_client(&self, realm: &str, id: &str, rep: &Value) -> Result<(), Error> {
        self.put(&[realm, "clients", id], rep, "client").await
    }

    /// Delete a client; an already-missing client counts as deleted.
    pub async fn delete_client(&self, realm: &str, id: &str) -> Result<(), Error> {
        match self.delete(&[realm, "clients", id], None, "client").await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }

    /// The client's current secret.
    pub async fn client_secret(&self, realm: &str, id: &str) -> Result<SecretString, Error> {
        let v = self.get(&[realm, "clients", id, "client-secret"], &[], "client-secret").await?;
        secret_value(&v)
    }

    /// Generate a new secret (POST); returns it.
    pub async fn regenerate_client_secret(&self, realm: &str, id: &str) -> Result<SecretString, Error> {
        let r = self.post(&[realm, "clients", id, "client-secret"], &Value::Null, "client-secret").await?;
        secret_value(&r.body)
    }

    /// Set the client's secret to `secret` (GET → merge → PUT: nothing else on the client changes).
    /// `read`: the client as the caller read it, when nothing changed it since (saves the GET).
    pub async fn set_client_secret(
        &self,
        realm: &str,
        id: &str,
        secret: &SecretString,
        read: Option<&Value>,
    ) -> Result<(), Error> {
        let rep = match read {
            Some(rep) => rep.clone(),
            None => self.get(&[realm, "clients", id], &[], "client").await?,
        };
        let Value::Object(mut rep) = rep else {
            return Err(Error::new(ErrorKind::Protocol, "read client", "the answer is not a client representation"));
        };
        strip_for_put(&mut rep);
        rep.insert("secret".into(), Value::String(secret.expose_secret().to_string()));
        self.put(&[realm, "clients", id], &Value::Object(rep), "client").await
    }

    // ---- ids remembered between reconciles (see `memo`) -------------------------------------------
    //
    // Only ids Keycloak changes by replacing the object are remembered; a request that uses a
    // replaced one answers 404, and its caller forgets it, reads it again and retries once.

    /// The service-account user of client `client` (internal id), as last read.
    pub fn remembered_service_account_user(&self, realm: &str, client: &str) -> Option<String> {
        self.memo.service_account_user(realm, client)
    }

    pub fn remember_service_account_user(&self, realm: &str, client: &str, user: &str) {
        self.memo.remember_service_account_user(realm, client, user);
    }

    pub fn forget_service_account_user(&self, realm: &str, client: &str) {
        self.memo.forget_service_account_user(realm, client);
    }

    /// Role `name` of the realm (`container` `None`) or of the client with internal id `container`,
    /// as read less than a minute ago: its `id`, `name`, `clientRole` and `containerId` only. Never
    /// whether it is composite (that changes in place, and the admin-role guard needs it fresh).
    pub fn remembered_role(&self, realm: &str, container: Option<&str>, name: &str) -> Option<Value> {
        self.memo.role(realm, container.unwrap_or_default(), name, Instant::now())
    }

    /// Remember the identity fields of role representation `rep` (see [`Self::remembered_role`]).
    pub fn remember_role(&self, realm: &str, container: Option<&str>, name: &str, rep: &Value) {
        let identity: serde_json::Map<String, Value> = ["id", "name", "clientRole", "containerId"]
            .iter()
            .filter_map(|k| Some((k.to_string(), rep.get(*k)?.clone())))
            .collect();
        if identity.get("id").and_then(Value::as_str).is_some_and(|id| !id.is_empty()) {
            self.memo.remember_role(
                realm,
                container.unwrap_or_default(),
                name,
                Value::Object(identity),
                Instant::now(),
            );
        }
    }

    pub fn forget_role(&self, realm: &str, container: Option<&str>, name: &str) {
        self.memo.forget_role(realm, container.unwrap_or_default(), name);
    }

    /// Keycloak's version and uptime, from its server info. An uptime that shows a start not seen
    /// before (Keycloak restarted since the last look, even if no request failed meanwhile) counts
    /// as a comeback (see [`KeycloakAdmin::take_comeback`]). Only `systemInfo` is decoded.
    pub async fn server_info(&self) -> Result<ServerInfo, Error> {
        let sent = wall_ms();
        let (_, _, text) = self.request(Method::GET, &["admin", "serverinfo"], &[], None, "serverinfo").await?;
        let answered = wall_ms();
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(rename = "systemInfo", default)]
            system_info: Value,
        }
        let raw: Raw =
            serde_json::from_str(&text).map_err(|e| Error::new(ErrorKind::Decode, "server info", e.to_string()))?;
        let uptime_ms = raw.system_info.get("uptimeMillis").and_then(Value::as_u64);
        if uptime_ms.is_none() && !self.no_uptime_logged.swap(true, Ordering::Relaxed) {
            // Keycloak 26.4 and later leave systemInfo out for admins of realms other than master.
            tracing::warn!(
                keycloak = self.base_url(),
                admin_realm = self.admin_realm,
                "Keycloak's server info has no uptime (systemInfo.uptimeMillis; newer Keycloaks give it only to \
                 admins of the master realm): a Keycloak restart that no request of kco's sees fail is \
                 noticed only at the next resync"
            );
        }
        if let Some(up) = uptime_ms
            && self.starts.lock().is_ok_and(|mut s| s.observe(sent, answered, up))
        {
            self.note_comeback(Comeback::Restarted);
        }
        Ok(ServerInfo {
            version: raw.system_info.get("version").and_then(Value::as_str).unwrap_or("unknown").to_string(),
            uptime: uptime_ms.map(Duration::from_millis),
        })
    }

    /// Keycloak's version, from its server info.
    pub async fn server_version(&self) -> Result<String, Error> {
        Ok(self.server_info().await?.version)
    }
}

/// What kco reads from Keycloak's server info.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub version: String,
    /// How long Keycloak has been running (`systemInfo.uptimeMillis`), when it says.
    pub uptime: Option<Duration>,
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub struct PostResult {
    pub created_id: Option<String>,
    pub body: Value,
}

fn secret_value(v: &Value) -> Result<SecretString, Error> {
    v.get("value")
        .and_then(Value::as_str)
        .map(|s| SecretString::from(s.to_string()))
        .ok_or_else(|| Error::new(ErrorKind::Protocol, "read client secret", "no value in the answer"))
}

/// Fields of a client representation that a `PUT /clients/{id}` must not carry: Keycloak manages
/// them through their own endpoints (scopes, mappers, authorization, the secret's) or ignores them,
/// and sending what was read back could undo a change made in between. Applied by [`strip_for_put`],
/// the one way every client PUT kco makes is built.
const PUT_STRIP: &[&str] =
    &["protocolMappers", "defaultClientScopes", "optionalClientScopes", "authorizationSettings", "access", "secret"];

/// Prefix of the attributes where Keycloak records the client secret's life: creation and
/// expiration times, and the previous secret kept for a rotation's grace period.
pub const SECRET_RECORD_PREFIX: &str = "client.secret.";

/// Make a client representation that was read into the body of a `PUT /clients/{id}`: without the
/// fields of [`PUT_STRIP`] and without the secret's records (attributes `client.secret.*`). Keycloak
/// keeps what a PUT leaves out, while a value read before a rotation and sent after it would undo
/// it: the previous secret would be current again, and the one consumers now hold refused.
pub fn strip_for_put(rep: &mut serde_json::Map<String, Value>) {
    for k in PUT_STRIP {
        rep.remove(*k);
    }
    if let Some(Value::Object(attrs)) = rep.get_mut("attributes") {
        attrs.retain(|k, _| !k.starts_with(SECRET_RECORD_PREFIX));
    }
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<&str> {
    headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok())
}

fn transport(what: String, e: &reqwest::Error) -> Error {
    // reqwest's Display can include the URL but never a body or header, so it carries no credential.
    let mut detail = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    // A body that arrived but could not be read is a bad answer, not a missing one.
    let kind = if e.is_decode() || e.is_body() { ErrorKind::Decode } else { ErrorKind::Unreachable };
    Error::new(kind, what, detail)
}

/// Whether `segment` stays one path segment of its own (see `KeycloakAdmin::url`).
pub fn is_plain_segment(segment: &str) -> bool {
    !matches!(segment, "" | "." | "..") && !segment.chars().any(char::is_control)
}

/// Test hook: Keycloak created the client, but its answer is lost on the way back (the first
/// `KCO_FAULT_LOSE_CREATE_RESPONSES` times), so the caller must find its own client on retry.
#[cfg(feature = "fault-injection")]
fn lose_create_response() -> Result<(), Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LOST: AtomicU64 = AtomicU64::new(0);
    let limit = std::env::var("KCO_FAULT_LOSE_CREATE_RESPONSES").ok().and_then(|v| v.parse::<u64>().ok());
    if limit.is_some_and(|n| LOST.fetch_add(1, Ordering::SeqCst) < n) {
        tracing::warn!("KCO_FAULT_LOSE_CREATE_RESPONSES: losing the answer to a client creation Keycloak accepted");
        return Err(Error::new(ErrorKind::Unreachable, "create client", "connection reset (fault injection)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_of_is_the_admin_clients_base_url() {
        for url in
            ["http://127.0.0.1:8080", "HTTP://Keycloak.Example:80/", "https://kc.example/auth/", "http://kc:8080/a//"]
        {
            let config = KeycloakAdminConfig {
                url: url.into(),
                admin_realm: "master".into(),
                credentials: AdminCredentials::Password { username: "admin".into(), password: SecretString::from("x") },
                ca_pem: None,
                timeout: Duration::from_secs(1),
            };
            let built = KeycloakAdmin::new(config, RequestMetrics::default()).unwrap();
            assert_eq!(base_url_of(url).unwrap(), built.base_url(), "{url}");
        }
        assert!(base_url_of("not a url").is_err());
        assert!(base_url_of("mailto:kc@example.com").is_err());
    }

    /// A refused connection followed by any answer is one comeback, reported once; a connection that
    /// opens and then fails is none. (A loopback socket stands in for Keycloak: this checks how the
    /// client classifies transport failures, not Keycloak; `faults_restart` kills the real one.)
    #[tokio::test]
    async fn a_refused_connection_then_an_answer_is_one_comeback() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let kc = KeycloakAdmin::new(
            KeycloakAdminConfig {
                url: format!("http://127.0.0.1:{port}"),
                admin_realm: "master".into(),
                credentials: AdminCredentials::Password { username: "u".into(), password: SecretString::from("p") },
                ca_pem: None,
                timeout: Duration::from_secs(5),
            },
            RequestMetrics::default(),
        )
        .unwrap();
        let refused = kc.get(&["r"], &[], "realm").await.unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Unreachable);
        assert_eq!(kc.take_comeback(), None, "no answer yet");

        // The port answers again: one HTTP answer (401 from the token endpoint) is a comeback.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server = tokio::spawn(async move {
            for answer in [true, false] {
                let (mut sock, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                if answer {
                    let body = "{\"error\":\"invalid_grant\"}";
                    let head = format!(
                        "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    sock.write_all(head.as_bytes()).await.unwrap();
                    sock.write_all(body.as_bytes()).await.unwrap();
                }
                // else: the connection opens and is closed without an answer.
            }
        });
        assert_eq!(kc.get(&["r"], &[], "realm").await.unwrap_err().kind, ErrorKind::Unauthorized);
        assert_eq!(kc.take_comeback(), Some(Comeback::AnsweredAgain), "Keycloak answered after refusing");
        assert_eq!(kc.take_comeback(), None, "reported once");
        assert_eq!(kc.get(&["r"], &[], "realm").await.unwrap_err().kind, ErrorKind::Unreachable);
        server.await.unwrap();
        assert_eq!(kc.take_comeback(), None, "a connection that opened and broke is no comeback");

        // Refused and answered again within COMEBACK_INTERVAL: not reported a second time.
        assert_eq!(kc.get(&["r"], &[], "realm").await.unwrap_err().kind, ErrorKind::Unreachable);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = "HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
            sock.write_all(head.as_bytes()).await.unwrap();
        });
        assert_eq!(kc.get(&["r"], &[], "realm").await.unwrap_err().kind, ErrorKind::Unauthorized);
        server.await.unwrap();
        assert_eq!(kc.take_comeback(), None, "one comeback per interval");

        // Held, not dropped: once the interval has passed, it is reported (once).
        let earlier = Instant::now().checked_sub(COMEBACK_INTERVAL + Duration::from_secs(1)).unwrap();
        *kc.last_comeback.lock().unwrap() = Some(earlier);
        assert_eq!(kc.take_comeback(), Some(Comeback::AnsweredAgain), "the held comeback, after the interval");
        assert_eq!(kc.take_comeback(), None, "reported once");
    }

    /// An admin client rebuilt for new credentials keeps the starts and the held comeback of the
    /// one it replaces (same URL); one for another URL starts afresh.
    #[test]
    fn a_rebuilt_admin_client_keeps_what_the_earlier_one_knew() {
        let old = admin();
        assert!(!old.starts.lock().unwrap().observe(1_000_000, 1_000_010, 500_000), "first answer records");
        old.note_comeback(Comeback::AnsweredAgain);
        old.note_comeback(Comeback::Restarted);
        let new = admin();
        new.inherit(&old);
        assert_eq!(new.take_comeback(), Some(Comeback::Restarted), "the held comeback carried over, a restart");
        assert!(new.starts.lock().unwrap().observe(2_000_000, 2_000_010, 1_000), "a start after the known one");

        let elsewhere = KeycloakAdmin::new(
            KeycloakAdminConfig {
                url: "https://other.example.com".into(),
                admin_realm: "master".into(),
                credentials: AdminCredentials::Password { username: "u".into(), password: SecretString::from("p") },
                ca_pem: None,
                timeout: Duration::from_secs(1),
            },
            RequestMetrics::default(),
        )
        .unwrap();
        let fresh = admin();
        fresh.note_comeback(Comeback::Restarted);
        elsewhere.inherit(&fresh);
        assert_eq!(elsewhere.take_comeback(), None, "nothing carried to another Keycloak");
    }

    fn admin() -> KeycloakAdmin {
        KeycloakAdmin::new(
            KeycloakAdminConfig {
                url: "https://kc.example.com/auth".into(),
                admin_realm: "master".into(),
                credentials: AdminCredentials::Password { username: "u".into(), password: SecretString::from("p") },
                ca_pem: None,
                timeout: Duration::from_secs(1),
            },
            RequestMetrics::default(),
        )
        .unwrap()
    }

    #[test]
    fn names_become_one_encoded_segment_each() {
        let u = admin().url(&["admin", "realms", "a/../../master", "roles", "x?y#z"]).unwrap();
        assert_eq!(u.as_str(), "https://kc.example.com/auth/admin/realms/a%2F..%2F..%2Fmaster/roles/x%3Fy%23z");
        let u = admin().url(&["admin", "realms", "r", "roles", "%2e%2e"]).unwrap();
        assert_eq!(u.path(), "/auth/admin/realms/r/roles/%252e%252e");
    }

    #[test]
    fn names_that_would_leave_their_place_are_refused_before_any_request() {
        for bad in ["..", ".", "", "r\r\nX-Injected: 1", "a\u{0}b"] {
            let e = admin().url(&["admin", "realms", "r", "roles", bad]).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadRequest, "{bad:?}");
            assert!(e.detail.contains("rename it"), "{e}");
        }
    }
}
