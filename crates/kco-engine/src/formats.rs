//! formats: the data of `additionalSecrets`, the credentials under the key names a consumer expects,
//! from a preset `format` and/or `keys` templates. Validation and rendering share one parser so they agree.

use std::collections::BTreeMap;

use kco_api::{AdditionalSecret, SecretFormat};
use secrecy::ExposeSecret;

use crate::kube_names::{check_data_key, check_object_name};
use crate::secret::{Credentials, SecretData};

/// One unusable `additionalSecrets` entry: the field (path from `spec`, Kubernetes field-path style) and
/// what to do. Never carries a credential value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("spec.{field}: {message}")]
pub struct FormatError {
    pub field: String,
    pub message: String,
}

impl FormatError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    ClientId,
    ClientSecret,
    Issuer,
    TokenEndpoint,
    AuthEndpoint,
    UserinfoEndpoint,
    JwksEndpoint,
    EndSessionEndpoint,
    Realm,
}

const PLACEHOLDERS: [(&str, Placeholder); 9] = [
    ("clientId", Placeholder::ClientId),
    ("clientSecret", Placeholder::ClientSecret),
    ("issuer", Placeholder::Issuer),
    ("tokenEndpoint", Placeholder::TokenEndpoint),
    ("authEndpoint", Placeholder::AuthEndpoint),
    ("userinfoEndpoint", Placeholder::UserinfoEndpoint),
    ("jwksEndpoint", Placeholder::JwksEndpoint),
    ("endSessionEndpoint", Placeholder::EndSessionEndpoint),
    ("realm", Placeholder::Realm),
];

impl Placeholder {
    /// `None` only for the secret of a client that has none (a public client).
    fn value<'a>(self, creds: &'a Credentials, realm: &'a str) -> Option<&'a str> {
        let e = &creds.endpoints;
        Some(match self {
            Placeholder::ClientId => &creds.client_id,
            Placeholder::ClientSecret => return creds.client_secret.as_ref().map(|s| s.expose_secret()),
            Placeholder::Issuer => &e.issuer,
            Placeholder::TokenEndpoint => &e.token,
            Placeholder::AuthEndpoint => &e.auth,
            Placeholder::UserinfoEndpoint => &e.userinfo,
            Placeholder::JwksEndpoint => &e.jwks,
            Placeholder::EndSessionEndpoint => &e.logout,
            Placeholder::Realm => realm,
        })
    }
}

/// The preset's keys; `keys` entries of the same name replace them.
fn preset_keys(f: SecretFormat) -> &'static [(&'static str, Placeholder)] {
    match f {
        SecretFormat::Mlflow => &[
            ("OIDC_CLIENT_ID", Placeholder::ClientId),
            ("OIDC_CLIENT_SECRET", Placeholder::ClientSecret),
            ("OIDC_TOKEN_URL", Placeholder::TokenEndpoint),
        ],
        SecretFormat::Phoenix => &[
            ("PHOENIX_OAUTH2_CLIENT_ID", Placeholder::ClientId),
            ("PHOENIX_OAUTH2_CLIENT_SECRET", Placeholder::ClientSecret),
        ],
        SecretFormat::OtelCollector => {
            &[("MLFLOW_CLIENT_ID", Placeholder::ClientId), ("MLFLOW_CLIENT_SECRET", Placeholder::ClientSecret)]
        }
    }
}

enum Piece<'t> {
    Text(&'t str),
    Value(Placeholder),
}

fn braced(name: &str) -> String {
    format!("{{{{{name}}}}}")
}

fn placeholder_list() -> String {
    PLACEHOLDERS.iter().map(|(n, _)| braced(n)).collect::<Vec<_>>().join(", ")
}

/// Splits a template into text and placeholders. `{{` always opens a placeholder, so a stray one is
/// reported rather than written to the Secret literally.
fn parse_template(t: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = t;
    while let Some((text, after_open)) = rest.split_once("{{") {
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let Some((inner, after_close)) = after_open.split_once("}}") else {
            let fragment: String = "{{".chars().chain(after_open.chars()).take(32).collect();
            return Err(format!(
                "{fragment:?} opens a placeholder with {{{{ but never closes it with }}}}; write placeholders like {}",
                braced("clientId")
            ));
        };
        let name = inner.trim();
        let Some((_, p)) = PLACEHOLDERS.iter().find(|(n, _)| *n == name) else {
            let shown: String = name.chars().take(64).collect();
            return Err(format!("unknown placeholder {}; use one of {}", braced(&shown), placeholder_list()));
        };
        pieces.push(Piece::Value(*p));
        rest = after_close;
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

enum Origin {
    Preset(SecretFormat),
    Keys,
}

struct Entry<'s> {
    pieces: Vec<Piece<'s>>,
    origin: Origin,
}

impl Entry<'_> {
    fn uses_secret(&self) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Value(Placeholder::ClientSecret)))
    }
}

fn public_client_error(at: &str, key: &str, origin: &Origin) -> FormatError {
    let secret = braced("clientSecret");
    match origin {
        Origin::Preset(f) => FormatError::new(
            format!("{at}.format"),
            format!(
                "{} writes the client secret to {key}, but public clients have no secret; override {key} in keys, \
                 use keys without {secret} instead of format, or set publicClient: false",
                SecretFormat::as_str(*f)
            ),
        ),
        Origin::Keys => FormatError::new(
            format!("{at}.keys[{key}]"),
            format!("uses {secret}, but public clients have no secret; remove it or set publicClient: false"),
        ),
    }
}

/// Every key the entry will hold with its parsed template, and every problem found on the way. `at` is
/// the entry's path from `spec`.
fn plan<'s>(
    spec: &'s AdditionalSecret,
    at: &str,
    has_secret: bool,
) -> (BTreeMap<&'s str, Entry<'s>>, Vec<FormatError>) {
    let mut errs = Vec::new();
    let mut entries = BTreeMap::new();
    if let Err(why) = check_object_name(&spec.name) {
        errs.push(FormatError::new(format!("{at}.name"), why));
    }
    let keys = spec.keys.as_ref().filter(|k| !k.is_empty());
    if spec.format.is_none() && keys.is_none() {
        errs.push(FormatError::new(
            at,
            format!(
                "sets neither format nor keys, so the Secret would be empty; set format (mlflow, phoenix or \
                 otel-collector) or keys, e.g. keys: {{CLIENT_ID: \"{}\"}}",
                braced("clientId")
            ),
        ));
    }
    if let Some(f) = spec.format {
        for (key, p) in preset_keys(f) {
            entries.insert(*key, Entry { pieces: vec![Piece::Value(*p)], origin: Origin::Preset(f) });
        }
    }
    for (key, template) in keys.into_iter().flatten() {
        if let Err(why) = check_data_key(key) {
            errs.push(FormatError::new(format!("{at}.keys"), why));
            continue;
        }
        match parse_template(template) {
            Ok(pieces) => {
                entries.insert(key.as_str(), Entry { pieces, origin: Origin::Keys });
            }
            Err(why) => {
                // Drop the preset entry too, so a broken override is not silently replaced by the preset.
                entries.remove(key.as_str());
                errs.push(FormatError::new(format!("{at}.keys[{key}]"), why));
            }
        }
    }
    if !has_secret {
        errs.extend(
            entries.iter().filter(|(_, e)| e.uses_secret()).map(|(k, e)| public_client_error(at, k, &e.origin)),
        );
    }
    (entries, errs)
}

/// Everything wrong with `additionalSecrets[index]` that can be known without credentials.
pub fn validate_additional(spec: &AdditionalSecret, index: usize, public_client: bool) -> Vec<FormatError> {
    plan(spec, &format!("additionalSecrets[{index}]"), !public_client).1
}

/// The data of one additional Secret. Errors name the entry by its Secret name, Server-Side Apply style
/// (`additionalSecrets[name="x"]`), since the index is not known here.
pub fn render_additional(spec: &AdditionalSecret, creds: &Credentials, realm: &str) -> Result<SecretData, FormatError> {
    let at = format!("additionalSecrets[name={:?}]", spec.name);
    let (entries, errs) = plan(spec, &at, creds.client_secret.is_some());
    if let Some(e) = errs.into_iter().next() {
        return Err(e);
    }
    let mut data = BTreeMap::new();
    for (key, entry) in entries {
        let mut value = String::new();
        for piece in &entry.pieces {
            match piece {
                Piece::Text(t) => value.push_str(t),
                Piece::Value(p) => {
                    value.push_str(p.value(creds, realm).ok_or_else(|| public_client_error(&at, key, &entry.origin))?)
                }
            }
        }
        data.insert(key.to_string(), value);
    }
    Ok(SecretData(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kco_api::Endpoints;
    use secrecy::SecretString;

    const SECRET: &str = "s3cr3t-value";
    const BASE: &str = "https://kc.example.com/realms/team-a";
    const OIDC: &str = "https://kc.example.com/realms/team-a/protocol/openid-connect";

    fn creds(secret: bool) -> Credentials {
        Credentials {
            client_id: "svc".into(),
            client_secret: secret.then(|| SecretString::from(SECRET)),
            endpoints: Endpoints::for_realm("https://kc.example.com", "team-a"),
        }
    }

    fn spec(format: Option<SecretFormat>, keys: &[(&str, &str)]) -> AdditionalSecret {
        AdditionalSecret {
            name: "app-oidc".into(),
            namespace: None,
            format,
            keys: (!keys.is_empty()).then(|| keys.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            labels: None,
            annotations: None,
        }
    }

    fn render(s: &AdditionalSecret) -> BTreeMap<String, String> {
        render_additional(s, &creds(true), "team-a").unwrap().0
    }

    fn key_set(m: &BTreeMap<String, String>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    fn assert_no_secret(e: &FormatError) {
        assert!(!e.to_string().contains(SECRET), "{e}");
        assert!(!format!("{e:?}").contains(SECRET), "{e:?}");
    }

    // ---- presets ----

    #[test]
    fn mlflow_preset_keys() {
        let d = render(&spec(Some(SecretFormat::Mlflow), &[]));
        assert_eq!(key_set(&d), ["OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_TOKEN_URL"]);
        assert_eq!(d["OIDC_CLIENT_ID"], "svc");
        assert_eq!(d["OIDC_CLIENT_SECRET"], SECRET);
        assert_eq!(d["OIDC_TOKEN_URL"], format!("{OIDC}/token"));
    }

    #[test]
    fn phoenix_preset_keys() {
        let d = render(&spec(Some(SecretFormat::Phoenix), &[]));
        assert_eq!(key_set(&d), ["PHOENIX_OAUTH2_CLIENT_ID", "PHOENIX_OAUTH2_CLIENT_SECRET"]);
        assert_eq!(d["PHOENIX_OAUTH2_CLIENT_ID"], "svc");
        assert_eq!(d["PHOENIX_OAUTH2_CLIENT_SECRET"], SECRET);
    }

    #[test]
    fn otel_collector_preset_keys() {
        let d = render(&spec(Some(SecretFormat::OtelCollector), &[]));
        assert_eq!(key_set(&d), ["MLFLOW_CLIENT_ID", "MLFLOW_CLIENT_SECRET"]);
        assert_eq!(d["MLFLOW_CLIENT_ID"], "svc");
        assert_eq!(d["MLFLOW_CLIENT_SECRET"], SECRET);
    }

    #[test]
    fn rendered_debug_hides_values() {
        let d = render_additional(&spec(Some(SecretFormat::Mlflow), &[]), &creds(true), "team-a").unwrap();
        assert!(!format!("{d:?}").contains(SECRET));
    }

    // ---- templates ----

    #[test]
    fn template_every_placeholder() {
        let d = render(&spec(
            None,
            &[
                ("ID", "{{clientId}}"),
                ("SECRET", "{{clientSecret}}"),
                ("ISSUER", "{{issuer}}"),
                ("TOKEN", "{{tokenEndpoint}}"),
                ("AUTH", "{{authEndpoint}}"),
                ("USERINFO", "{{userinfoEndpoint}}"),
                ("JWKS", "{{jwksEndpoint}}"),
                ("LOGOUT", "{{endSessionEndpoint}}"),
                ("REALM", "{{realm}}"),
            ],
        ));
        assert_eq!(d.len(), 9);
        assert_eq!(d["ID"], "svc");
        assert_eq!(d["SECRET"], SECRET);
        assert_eq!(d["ISSUER"], BASE);
        assert_eq!(d["TOKEN"], format!("{OIDC}/token"));
        assert_eq!(d["AUTH"], format!("{OIDC}/auth"));
        assert_eq!(d["USERINFO"], format!("{OIDC}/userinfo"));
        assert_eq!(d["JWKS"], format!("{OIDC}/certs"));
        assert_eq!(d["LOGOUT"], format!("{OIDC}/logout"));
        assert_eq!(d["REALM"], "team-a");
    }

    #[test]
    fn template_mixes_text_and_placeholders() {
        let d = render(&spec(None, &[("config.json", r#"{"id":"{{clientId}}","realm":"{{realm}}"}"#)]));
        assert_eq!(d["config.json"], r#"{"id":"svc","realm":"team-a"}"#);
    }

    #[test]
    fn template_whitespace_inside_braces() {
        let d = render(&spec(None, &[("ID", "{{ clientId }}"), ("URL", "{{\tissuer\n}}/x")]));
        assert_eq!(d["ID"], "svc");
        assert_eq!(d["URL"], format!("{BASE}/x"));
    }

    #[test]
    fn template_single_braces_and_plain_text_are_literal() {
        let d = render(&spec(None, &[("A", "a{b}c }}"), ("B", "plain"), ("C", "")]));
        assert_eq!(d["A"], "a{b}c }}");
        assert_eq!(d["B"], "plain");
        assert_eq!(d["C"], "");
    }

    #[test]
    fn template_repeated_placeholder() {
        let d = render(&spec(None, &[("A", "{{clientId}}:{{clientId}}")]));
        assert_eq!(d["A"], "svc:svc");
    }

    #[test]
    fn keys_merge_over_preset_and_keys_win() {
        let d = render(&spec(Some(SecretFormat::Mlflow), &[("OIDC_TOKEN_URL", "{{issuer}}"), ("EXTRA", "{{realm}}")]));
        assert_eq!(key_set(&d), ["EXTRA", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_TOKEN_URL"]);
        assert_eq!(d["OIDC_TOKEN_URL"], BASE);
        assert_eq!(d["OIDC_CLIENT_ID"], "svc");
        assert_eq!(d["EXTRA"], "team-a");
    }

    #[test]
    fn keys_only_without_format() {
        let d = render(&spec(None, &[("CLIENT_ID", "{{clientId}}")]));
        assert_eq!(key_set(&d), ["CLIENT_ID"]);
    }

    #[test]
    fn valid_entry_validates_clean() {
        assert!(validate_additional(&spec(Some(SecretFormat::Phoenix), &[("X", "{{realm}}")]), 0, false).is_empty());
    }

    // ---- errors ----

    #[test]
    fn neither_format_nor_keys_is_an_error() {
        for s in [spec(None, &[]), AdditionalSecret { keys: Some(BTreeMap::new()), ..spec(None, &[]) }] {
            let errs = validate_additional(&s, 1, false);
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].field, "additionalSecrets[1]");
            assert!(errs[0].to_string().contains("neither format nor keys"), "{}", errs[0]);
            assert!(render_additional(&s, &creds(true), "team-a").is_err());
        }
    }

    #[test]
    fn unknown_placeholder_names_key_and_placeholder() {
        let errs = validate_additional(&spec(None, &[("ID", "{{ clientID }}")]), 2, false);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "additionalSecrets[2].keys[ID]");
        let shown = errs[0].to_string();
        assert!(shown.starts_with("spec.additionalSecrets[2].keys[ID]: unknown placeholder {{clientID}}"), "{shown}");
        assert!(shown.contains("{{clientId}}"), "{shown}");
    }

    #[test]
    fn empty_placeholder_is_unknown() {
        let errs = validate_additional(&spec(None, &[("ID", "{{}}")]), 0, false);
        assert!(errs[0].message.starts_with("unknown placeholder {{}}"), "{}", errs[0]);
    }

    #[test]
    fn unterminated_placeholder_names_key_and_fragment() {
        let errs = validate_additional(&spec(None, &[("URL", "{{issuer}}/x/{{tokenEndpoint")]), 0, false);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "additionalSecrets[0].keys[URL]");
        assert!(errs[0].message.contains("\"{{tokenEndpoint\""), "{}", errs[0]);
        assert!(errs[0].message.contains("never closes"), "{}", errs[0]);
    }

    #[test]
    fn broken_override_of_preset_key_is_an_error() {
        let s = spec(Some(SecretFormat::Mlflow), &[("OIDC_TOKEN_URL", "{{tokenUrl}}")]);
        let e = render_additional(&s, &creds(true), "team-a").unwrap_err();
        assert_eq!(e.field, "additionalSecrets[name=\"app-oidc\"].keys[OIDC_TOKEN_URL]");
    }

    #[test]
    fn invalid_key_names_are_rejected() {
        let long = "K".repeat(254);
        for key in ["my key", "a/b", "", "ключ", ".", "..", "..x", long.as_str()] {
            let errs = validate_additional(&spec(None, &[(key, "{{clientId}}")]), 0, false);
            assert_eq!(errs.len(), 1, "{key:?}: {errs:?}");
            assert_eq!(errs[0].field, "additionalSecrets[0].keys", "{key:?}");
            assert!(errs[0].message.contains("like CLIENT_ID"), "{}", errs[0]);
        }
    }

    #[test]
    fn valid_key_names_are_accepted() {
        let long = "K".repeat(253);
        for key in ["a.b", "-_.", "config.json", "x..y", ".hidden", long.as_str()] {
            assert!(validate_additional(&spec(None, &[(key, "{{clientId}}")]), 0, false).is_empty(), "{key:?}");
        }
    }

    #[test]
    fn invalid_secret_name_is_rejected() {
        for name in ["", "App", "a_b", "-a", "a-", "a..b", "a b"] {
            let s = AdditionalSecret { name: name.into(), ..spec(Some(SecretFormat::Mlflow), &[]) };
            let errs = validate_additional(&s, 3, false);
            assert_eq!(errs.len(), 1, "{name:?}");
            assert_eq!(errs[0].field, "additionalSecrets[3].name");
        }
    }

    #[test]
    fn public_client_preset_secret_is_an_error() {
        for f in [SecretFormat::Mlflow, SecretFormat::Phoenix, SecretFormat::OtelCollector] {
            let errs = validate_additional(&spec(Some(f), &[]), 0, true);
            assert_eq!(errs.len(), 1, "{f:?}");
            assert_eq!(errs[0].field, "additionalSecrets[0].format");
            assert!(errs[0].message.contains("public clients have no secret"), "{}", errs[0]);
            let e = render_additional(&spec(Some(f), &[]), &creds(false), "team-a").unwrap_err();
            assert_eq!(e.field, "additionalSecrets[name=\"app-oidc\"].format");
            assert!(e.message.contains("public clients have no secret"), "{e}");
        }
    }

    #[test]
    fn public_client_template_secret_is_an_error() {
        let s = spec(None, &[("ID", "{{clientId}}"), ("S", "x-{{ clientSecret }}")]);
        let errs = validate_additional(&s, 4, true);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "additionalSecrets[4].keys[S]");
        assert!(errs[0].message.contains("public clients have no secret"), "{}", errs[0]);
        let e = render_additional(&s, &creds(false), "team-a").unwrap_err();
        assert_eq!(e.field, "additionalSecrets[name=\"app-oidc\"].keys[S]");
    }

    #[test]
    fn public_client_may_override_preset_secret_key() {
        let s = spec(Some(SecretFormat::Mlflow), &[("OIDC_CLIENT_SECRET", "")]);
        assert!(validate_additional(&s, 0, true).is_empty());
        let d = render_additional(&s, &creds(false), "team-a").unwrap().0;
        assert_eq!(d["OIDC_CLIENT_SECRET"], "");
        assert_eq!(d["OIDC_CLIENT_ID"], "svc");
    }

    #[test]
    fn public_client_without_secret_keys_renders() {
        let d = render_additional(&spec(None, &[("ID", "{{clientId}}")]), &creds(false), "r").unwrap().0;
        assert_eq!(d["ID"], "svc");
    }

    #[test]
    fn validate_reports_every_problem() {
        let s = AdditionalSecret {
            name: "Bad".into(),
            ..spec(Some(SecretFormat::Phoenix), &[("bad key", "x"), ("A", "{{nope}}"), ("B", "{{clientSecret}}")])
        };
        let fields: Vec<_> = validate_additional(&s, 0, true).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "additionalSecrets[0].name",
                "additionalSecrets[0].keys[A]",
                "additionalSecrets[0].keys",
                "additionalSecrets[0].keys[B]",
                "additionalSecrets[0].format",
            ]
        );
    }

    #[test]
    fn errors_never_show_the_secret() {
        let c = creds(true);
        for s in [
            spec(None, &[("A", "{{clientSecret}}{{oops}}")]),
            spec(None, &[("A", "{{clientSecret}}{{")]),
            spec(None, &[("bad key", "{{clientSecret}}")]),
        ] {
            let e = render_additional(&s, &c, "team-a").unwrap_err();
            assert_no_secret(&e);
        }
    }
}
