//! Property tests over parse → validate → render → plan. Bounded so they run on every `cargo test`
//! in a few seconds; `KCO_PROPTEST_SCALE=n` (set to 50 by `dev/test --long`) multiplies every case
//! count, `PROPTEST_CASES` overrides them.
//!
//! - validation is total: specs of every shape with hostile contents in every list and map (long and
//!   multi-byte strings, combining marks, bidi controls, NUL, confusables; mappers, additional Secrets
//!   with hostile key names and templates, rotation, flows, the whole authorizationSettings) are
//!   validated, rendered (`formats::validate_additional`, `formats::render_additional`) and planned
//!   without a panic (caught with `catch_unwind` and reported with the input), and every validation
//!   error names a `spec.` field;
//! - validation is a function of the spec's content: a serde round trip gets the same errors;
//! - arbitrary JSON and text never make the spec parser panic;
//! - specs built only from valid parts are accepted, and a plan for them creates the client;
//! - the plan converges: applied to a model of Keycloak (what it adds, omits and refuses), a create
//!   plan and, after arbitrary drift, an update plan each leave nothing to plan; planning is
//!   deterministic, and the GET-merge-PUT keeps every field and attribute kco does not manage.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::collections::{BTreeMap, BTreeSet};

use kco_api::KeycloakClientSpec;
use kco_api::{AdditionalSecret, Endpoints};
use kco_engine::formats;
use kco_engine::secret::Credentials;
use kco_engine::{ClientOperation, DesiredClient, ObservedClient, Owner, plan_client, validate_client};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

/// `cases` per property by default (a few seconds for the whole file); `KCO_PROPTEST_SCALE=n` multiplies
/// it (`dev/test --long` sets 50) and `PROPTEST_CASES` overrides it outright.
fn config(cases: u32) -> Config {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let cases =
        env("PROPTEST_CASES").unwrap_or_else(|| cases.saturating_mul(env("KCO_PROPTEST_SCALE").unwrap_or(1).max(1)));
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// Characters that break byte-oriented code: multi-byte (€ is 3 bytes, emoji 4), combining marks,
/// bidi controls, NUL and other controls, zero-width and confusable letters.
fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => prop_oneof![Just('€'), Just('😀'), Just('👩'), Just('\u{200D}'), Just('\u{0301}'), Just('\u{0308}')],
        2 => prop_oneof![Just('\u{202E}'), Just('\u{200F}'), Just('\u{0627}'), Just('\u{05D0}')],
        2 => prop_oneof![Just('\0'), Just('\n'), Just('\t'), Just('\u{7F}'), Just('\u{FEFF}'), Just('\u{200B}')],
        2 => prop_oneof![Just('а'), Just('е'), Just('о'), Just('ı'), Just('ﬁ'), Just('Ａ'), Just('ß'), Just('İ')],
        3 => prop_oneof![Just('a'), Just('Z'), Just('0'), Just('-'), Just('_'), Just('.'), Just('/'), Just(':'), Just('{'), Just('}'), Just('*')],
        1 => any::<char>(),
    ]
}

fn hostile_text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(hostile_char(), 0..max).prop_map(|v| v.into_iter().collect())
}

/// Long strings (up to a few thousand characters, often multi-byte) built by repeating a short piece,
/// so length limits and truncation in messages are reached.
fn long_string() -> impl Strategy<Value = String> {
    prop_oneof![
        (hostile_text(5), 1usize..1200).prop_map(|(s, n)| s.repeat(n)),
        (1usize..3000).prop_map(|n| "a".repeat(n)),
        (80usize..1100).prop_map(|n| "€".repeat(n)),
        (60usize..800).prop_map(|n| "😀".repeat(n)),
        ("[a-z]{0,40}", 1usize..300).prop_map(|(p, n)| format!("{p}{}", "é".repeat(n))),
    ]
}

// ---- Strategies: hostile values ----------------------------------------------------------------

/// Strings that stress the rules: URI-ish, wildcard-ish, template-ish, blank, non-ASCII, random.
fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("*".to_string()),
        Just("+".to_string()),
        Just(" ".to_string()),
        Just("kco.dev/owner".to_string()),
        Just("kco-audience-x".to_string()),
        Just("${authBaseUrl}".to_string()),
        "[a-z]{1,8}",
        "(https?|myapp|javascript|data|HTTP)(:|://|:///)[a-z*.:0-9]{0,12}(/[a-z*?#.]{0,6}){0,3}",
        "/[a-z*/?#]{0,12}",
        "[{}a-zA-Z ]{0,16}",
        "[0-9]{0,3}[smhdwD ]?",
        "[0-9]{1,2}:[0-9]{1,2}",
        "[A-Za-z_/+-]{0,20}",
        "\\PC{0,24}",
        "[a-z]{1,4}/[a-z]{0,4}",
        Just("€".repeat(100)),
        hostile_text(40),
        long_string(),
        ("(https://|/|myapp://)", hostile_text(20)).prop_map(|(a, b)| format!("{a}{b}")),
    ]
}

fn nasty_list() -> impl Strategy<Value = Option<Vec<String>>> {
    proptest::option::of(proptest::collection::vec(nasty_string(), 0..5))
}

/// Names from a small pool, so references between authorization objects sometimes resolve.
fn pool_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("read".to_string()),
        Just("write".to_string()),
        Just("docs".to_string()),
        Just("editors".to_string()),
        Just("a".to_string()),
        Just("b".to_string()),
        Just(String::new()),
        nasty_string(),
    ]
}

fn pool_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(pool_name(), 0..4)
}

fn opt_int() -> impl Strategy<Value = Option<i64>> {
    proptest::option::of(prop_oneof![any::<i64>(), -2i64..100, Just(i64::from(i32::MAX) + 1)])
}

fn opt_small_int() -> impl Strategy<Value = Option<i32>> {
    proptest::option::of(prop_oneof![-2i32..40, any::<i32>()])
}

fn set(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.to_string(), v);
    }
}

fn string_map() -> impl Strategy<Value = Option<BTreeMap<String, String>>> {
    proptest::option::of(proptest::collection::btree_map(nasty_string(), nasty_string(), 0..4))
}

fn settings() -> impl Strategy<Value = Value> {
    (
        any::<[bool; 8]>(),
        (opt_int(), opt_int(), opt_int(), opt_int()),
        proptest::option::of(prop_oneof![Just("S256"), Just("plain"), Just("")]),
        prop_oneof![Just("client-secret"), Just("client-jwt"), Just("client-secret-jwt"), Just("client-x509")],
    )
        .prop_map(|(b, (l1, l2, l3, l4), pkce, auth)| {
            let mut m = Map::new();
            for (i, k) in [
                "standardFlowEnabled",
                "implicitFlowEnabled",
                "directAccessGrantsEnabled",
                "serviceAccountsEnabled",
                "consentRequired",
                "displayOnConsentScreen",
                "fullScopeAllowed",
                "authorizationServicesEnabled",
            ]
            .iter()
            .enumerate()
            {
                m.insert(k.to_string(), json!(b[i]));
            }
            m.insert("clientAuthenticatorType".into(), json!(auth));
            set(&mut m, "accessTokenLifespan", l1.map(|v| json!(v)));
            set(&mut m, "refreshTokenLifespan", l2.map(|v| json!(v)));
            set(&mut m, "clientSessionIdleTimeout", l3.map(|v| json!(v)));
            set(&mut m, "clientSessionMaxLifespan", l4.map(|v| json!(v)));
            set(&mut m, "pkceCodeChallengeMethod", pkce.map(|v| json!(v)));
            Value::Object(m)
        })
}

fn rotation() -> impl Strategy<Value = Value> {
    let tz = prop_oneof![
        Just("UTC".to_string()),
        Just("Europe/Amsterdam".to_string()),
        Just("Etc/Unknown".to_string()),
        Just("Mars/Olympus".to_string()),
        nasty_string()
    ];
    (any::<bool>(), nasty_string(), proptest::option::of(nasty_string()), tz, proptest::option::of(nasty_string()))
        .prop_map(|(enabled, period, time, tz, grace)| {
            let mut m = Map::new();
            m.insert("enabled".into(), json!(enabled));
            m.insert("rotationPeriod".into(), json!(period));
            m.insert("timezone".into(), json!(tz));
            set(&mut m, "rotationTime", time.map(|v| json!(v)));
            set(&mut m, "gracePeriod", grace.map(|v| json!(v)));
            Value::Object(m)
        })
}

fn logic() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("POSITIVE"), Just("NEGATIVE")]
}

fn strategy_name() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("UNANIMOUS"), Just("AFFIRMATIVE"), Just("CONSENSUS")]
}

fn policies() -> impl Strategy<Value = Value> {
    let role = (pool_name(), logic(), proptest::collection::vec((pool_name(), any::<bool>()), 0..3)).prop_map(
        |(name, logic, roles)| {
            let roles: Vec<Value> = roles.into_iter().map(|(n, r)| json!({"name": n, "required": r})).collect();
            json!({"name": name, "logic": logic, "roles": roles})
        },
    );
    let user = (pool_name(), pool_names()).prop_map(|(n, users)| json!({"name": n, "users": users}));
    let group = (pool_name(), pool_names(), nasty_string())
        .prop_map(|(n, groups, claim)| json!({"name": n, "groups": groups, "groupsClaim": claim}));
    let client = (pool_name(), pool_names()).prop_map(|(n, clients)| json!({"name": n, "clients": clients}));
    let time = (
        pool_name(),
        proptest::option::of(prop_oneof!["20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}", nasty_string()]),
        proptest::option::of("20[0-9]{2}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}"),
        [opt_small_int(), opt_small_int(), opt_small_int(), opt_small_int(), opt_small_int()],
        [opt_small_int(), opt_small_int(), opt_small_int(), opt_small_int(), opt_small_int()],
    )
        .prop_map(|(n, nb, na, starts, ends)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(n));
            set(&mut m, "notBefore", nb.map(|v| json!(v)));
            set(&mut m, "notOnOrAfter", na.map(|v| json!(v)));
            for (i, (s, e)) in [
                ("dayMonth", "dayMonthEnd"),
                ("month", "monthEnd"),
                ("year", "yearEnd"),
                ("hour", "hourEnd"),
                ("minute", "minuteEnd"),
            ]
            .iter()
            .enumerate()
            {
                set(&mut m, s, starts[i].map(|v| json!(v)));
                set(&mut m, e, ends[i].map(|v| json!(v)));
            }
            Value::Object(m)
        });
    let regex = (pool_name(), nasty_string(), nasty_string())
        .prop_map(|(n, c, p)| json!({"name": n, "targetClaim": c, "pattern": p}));
    let aggregate = (pool_name(), strategy_name(), pool_names())
        .prop_map(|(n, d, p)| json!({"name": n, "decisionStrategy": d, "policies": p}));
    let js = (pool_name(), nasty_string()).prop_map(|(n, code)| json!({"name": n, "code": code}));
    (
        any::<bool>(),
        proptest::collection::vec(role, 0..3),
        proptest::collection::vec(user, 0..2),
        proptest::collection::vec(group, 0..2),
        proptest::collection::vec(client, 0..2),
        proptest::collection::vec(time, 0..2),
        proptest::collection::vec(regex, 0..2),
        proptest::collection::vec(aggregate, 0..3),
        proptest::collection::vec(js, 0..2),
    )
        .prop_map(|(allow, role, user, group, client, time, regex, aggregate, js)| {
            json!({
                "allowJavaScriptPolicies": allow, "rolePolicies": role, "userPolicies": user,
                "groupPolicies": group, "clientPolicies": client, "timePolicies": time,
                "regexPolicies": regex, "aggregatePolicies": aggregate, "javascriptPolicies": js
            })
        })
}

fn authorization() -> impl Strategy<Value = Value> {
    let scopes = proptest::option::of(proptest::collection::vec(
        (pool_name(), proptest::option::of(nasty_string()), proptest::option::of(nasty_string())).prop_map(
            |(n, display, icon)| {
                let mut m = Map::new();
                m.insert("name".into(), json!(n));
                set(&mut m, "displayName", display.map(|v| json!(v)));
                set(&mut m, "iconUri", icon.map(|v| json!(v)));
                Value::Object(m)
            },
        ),
        0..4,
    ));
    let resource = (
        pool_name(),
        nasty_list(),
        pool_names(),
        proptest::option::of(nasty_string()),
        (
            proptest::option::of(nasty_string()),
            any::<bool>(),
            proptest::collection::btree_map(nasty_string(), proptest::collection::vec(nasty_string(), 0..3), 0..3),
        ),
    )
        .prop_map(|(n, uris, scopes, ty, (display, owner_managed, attributes))| {
            let mut m = Map::new();
            m.insert("name".into(), json!(n));
            m.insert("uris".into(), json!(uris.unwrap_or_default()));
            m.insert("scopes".into(), json!(scopes));
            set(&mut m, "type", ty.map(|v| json!(v)));
            set(&mut m, "displayName", display.map(|v| json!(v)));
            m.insert("ownerManagedAccess".into(), json!(owner_managed));
            m.insert("attributes".into(), json!(attributes));
            Value::Object(m)
        });
    let resources = proptest::option::of(proptest::collection::vec(resource, 0..3));
    let permission = || (pool_name(), pool_names(), pool_names(), pool_names(), proptest::option::of(nasty_string()));
    let resource_perm = permission().prop_map(|(n, res, _, pol, ty)| {
        let mut m = Map::new();
        m.insert("name".into(), json!(n));
        m.insert("resources".into(), json!(res));
        m.insert("policies".into(), json!(pol));
        set(&mut m, "resourceType", ty.map(|v| json!(v)));
        Value::Object(m)
    });
    let scope_perm = permission().prop_map(|(n, res, scopes, pol, ty)| {
        let mut m = Map::new();
        m.insert("name".into(), json!(n));
        m.insert("resources".into(), json!(res));
        m.insert("scopes".into(), json!(scopes));
        m.insert("policies".into(), json!(pol));
        set(&mut m, "resourceType", ty.map(|v| json!(v)));
        Value::Object(m)
    });
    let permissions = proptest::option::of(
        (proptest::collection::vec(resource_perm, 0..3), proptest::collection::vec(scope_perm, 0..3))
            .prop_map(|(r, s)| json!({"resourcePermissions": r, "scopePermissions": s})),
    );
    (
        prop_oneof![Just("ENFORCING"), Just("PERMISSIVE"), Just("DISABLED")],
        strategy_name(),
        scopes,
        resources,
        proptest::option::of(policies()),
        permissions,
    )
        .prop_map(|(mode, decision, scopes, resources, policies, permissions)| {
            let mut m = Map::new();
            m.insert("policyEnforcementMode".into(), json!(mode));
            m.insert("decisionStrategy".into(), json!(decision));
            set(&mut m, "scopes", scopes.map(Value::Array));
            set(&mut m, "resources", resources.map(Value::Array));
            set(&mut m, "policies", policies);
            set(&mut m, "permissions", permissions);
            Value::Object(m)
        })
}

fn mappers() -> impl Strategy<Value = Option<Value>> {
    let mapper = (
        pool_name(),
        prop_oneof![Just("openid-connect".to_string()), Just("saml".to_string()), nasty_string()],
        nasty_string(),
        string_map(),
    )
        .prop_map(
            |(n, p, t, c)| json!({"name": n, "protocol": p, "protocolMapper": t, "config": c.unwrap_or_default()}),
        );
    proptest::option::of(proptest::collection::vec(mapper, 0..4).prop_map(Value::Array))
}

fn additional_secrets() -> impl Strategy<Value = Option<Value>> {
    proptest::option::of(proptest::collection::vec(additional_secret(), 0..3).prop_map(Value::Array))
}

/// Secret data key names: valid, invalid ASCII, and long or multi-byte (beyond 253 bytes, with a
/// character boundary off byte 32, where a byte slice of the key panics).
fn data_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("CLIENT_ID".to_string()),
        Just("..x".to_string()),
        Just(".".to_string()),
        "[A-Za-z0-9._-]{1,300}",
        (0usize..40, 80usize..200).prop_map(|(a, n)| format!("{}{}", "K".repeat(a), "€".repeat(n))),
        ("[A-Z_]{0,31}", prop_oneof![Just("é"), Just("😀"), Just("\u{0301}")], 1usize..300)
            .prop_map(|(p, c, n)| format!("{p}{}", c.repeat(n))),
        nasty_string()
    ]
}

/// One `additionalSecrets` entry of any shape serde accepts.
fn additional_secret() -> impl Strategy<Value = Value> {
    (
        nasty_string(),
        proptest::option::of(prop_oneof![Just("mlflow"), Just("phoenix"), Just("otel-collector")]),
        proptest::option::of(proptest::collection::btree_map(
            data_key(),
            prop_oneof![
                Just("{{clientId}}".to_string()),
                Just("{{clientSecret}}".to_string()),
                Just("{{ realm }}".to_string()),
                Just("{{nope}}".to_string()),
                Just("{{clientId".to_string()),
                (
                    "[a-z€ ]{0,8}",
                    prop_oneof![
                        Just("{{clientId}}"),
                        Just("{{ tokenUrl }}"),
                        Just("{{issuerUrl}}"),
                        Just("{{€}}"),
                        Just("{{")
                    ],
                    hostile_text(8)
                )
                    .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
                nasty_string()
            ],
            0..3,
        )),
        string_map(),
        string_map(),
    )
        .prop_map(|(name, format, keys, labels, annotations)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            set(&mut m, "format", format.map(|v| json!(v)));
            set(&mut m, "keys", keys.map(|v| json!(v)));
            set(&mut m, "labels", labels.map(|v| json!(v)));
            set(&mut m, "annotations", annotations.map(|v| json!(v)));
            Value::Object(m)
        })
}

/// A spec of any shape serde accepts, with hostile contents.
fn any_spec() -> impl Strategy<Value = Value> {
    let identity = (
        nasty_string(),
        nasty_string(),
        proptest::option::of(nasty_string()),
        prop_oneof![Just("openid-connect"), Just("saml"), Just("docker-v2")],
        any::<[bool; 4]>(),
    );
    let uris = (
        nasty_list(),
        nasty_list(),
        nasty_list(),
        [
            proptest::option::of(nasty_string()),
            proptest::option::of(nasty_string()),
            proptest::option::of(nasty_string()),
        ],
    );
    let lists = (nasty_list(), nasty_list(), nasty_list(), nasty_list(), mappers(), string_map());
    let roles = proptest::option::of((
        nasty_list(),
        proptest::option::of(proptest::collection::btree_map(
            nasty_string(),
            proptest::collection::vec(nasty_string(), 0..3),
            0..3,
        )),
    ));
    let secrets = (
        proptest::option::of(nasty_string()),
        proptest::option::of((nasty_string(), nasty_string())),
        proptest::option::of(rotation()),
        additional_secrets(),
        proptest::option::of((string_map(), string_map())),
        proptest::option::of((nasty_string(), nasty_string(), nasty_string())),
    );
    let extras = (
        proptest::option::of(nasty_string()),
        proptest::option::of(nasty_string()),
        prop_oneof![Just("Delete"), Just("Orphan")],
        any::<[bool; 4]>(),
    );
    (identity, uris, settings(), lists, roles, secrets, proptest::option::of(authorization()), extras).prop_map(
        |(identity, uris, mut settings, lists, roles, secrets, mut authz, extras)| {
            let (client_name, description, deletion, more) = extras;
            settings["alwaysDisplayInConsole"] = json!(more[0]);
            settings["frontchannelLogout"] = json!(more[1]);
            settings["includeInTokenScope"] = json!(more[2]);
            if let Some(a) = authz.as_mut() {
                a["allowRemoteResourceManagement"] = json!(more[3]);
            }
            let (client_id, realm, realm_ns, protocol, b) = identity;
            let mut m = Map::new();
            m.insert("clientId".into(), json!(client_id));
            let mut realm_ref = json!({"name": realm});
            if let Some(ns) = realm_ns {
                realm_ref["namespace"] = json!(ns);
            }
            m.insert("realmRef".into(), realm_ref);
            m.insert("protocol".into(), json!(protocol));
            m.insert("publicClient".into(), json!(b[0]));
            m.insert("bearerOnly".into(), json!(b[1]));
            m.insert("manageSecret".into(), json!(b[2]));
            m.insert("regenerateSecret".into(), json!(b[3]));
            set(&mut m, "clientName", client_name.map(|v| json!(v)));
            set(&mut m, "description", description.map(|v| json!(v)));
            m.insert("deletionPolicy".into(), json!(deletion));
            let (redirects, origins, post_logout, [root, admin, base]) = uris;
            set(&mut m, "redirectUris", redirects.map(|v| json!(v)));
            set(&mut m, "webOrigins", origins.map(|v| json!(v)));
            set(&mut m, "postLogoutRedirectUris", post_logout.map(|v| json!(v)));
            set(&mut m, "rootUrl", root.map(|v| json!(v)));
            set(&mut m, "adminUrl", admin.map(|v| json!(v)));
            set(&mut m, "baseUrl", base.map(|v| json!(v)));
            m.insert("settings".into(), settings);
            let (default_scopes, optional_scopes, client_roles, audiences, mappers, attributes) = lists;
            set(&mut m, "defaultClientScopes", default_scopes.map(|v| json!(v)));
            set(&mut m, "optionalClientScopes", optional_scopes.map(|v| json!(v)));
            set(&mut m, "clientRoles", client_roles.map(|v| json!(v)));
            set(&mut m, "audiences", audiences.map(|v| json!(v)));
            set(&mut m, "protocolMappers", mappers);
            set(&mut m, "attributes", attributes.map(|v| json!(v)));
            set(
                &mut m,
                "serviceAccountRoles",
                roles.map(|(realm_roles, client_roles)| {
                    let mut r = Map::new();
                    set(&mut r, "realmRoles", realm_roles.map(|v| json!(v)));
                    set(&mut r, "clientRoles", client_roles.map(|v| json!(v)));
                    Value::Object(r)
                }),
            );
            let (secret_name, client_secret, rotation, additional, metadata, flows) = secrets;
            set(&mut m, "secretName", secret_name.map(|v| json!(v)));
            set(&mut m, "clientSecret", client_secret.map(|(name, key)| json!({"name": name, "key": key})));
            set(&mut m, "secretRotation", rotation);
            set(&mut m, "additionalSecrets", additional);
            set(
                &mut m,
                "secretMetadata",
                metadata.map(|(labels, annotations)| json!({"labels": labels, "annotations": annotations})),
            );
            set(
                &mut m,
                "authenticationFlows",
                flows.map(|(b, d, c)| json!({"browserFlow": b, "directGrantFlow": d, "clientAuthenticationFlow": c})),
            );
            set(&mut m, "authorizationSettings", authz);
            Value::Object(m)
        },
    )
}

/// Arbitrary JSON, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("clientId".to_string()),
                    Just("realmRef".to_string()),
                    Just("name".to_string()),
                    Just("redirectUris".to_string()),
                    Just("settings".to_string()),
                    Just("secretRotation".to_string()),
                    Just("authorizationSettings".to_string()),
                    "[a-zA-Z]{1,12}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Observed Keycloak states to plan against: nothing, the client as it would be created, or junk.
fn observed_variants(desired: &DesiredClient, junk: Value, roles: Vec<String>) -> Vec<Option<ObservedClient>> {
    vec![
        None,
        Some(ObservedClient { representation: desired.create_representation(), ..ObservedClient::default() }),
        Some(ObservedClient {
            representation: junk,
            client_roles: roles.clone(),
            service_account_realm_roles: roles.clone(),
            service_account_client_roles: BTreeMap::from([("x".to_string(), roles)]),
            secret: None,
            ..ObservedClient::default()
        }),
    ]
}

/// Runs `f`, turning a panic into a property failure that shows `what` (the input) and the panic message.
fn no_panic<T>(what: &str, input: &dyn std::fmt::Debug, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!("{what} panicked: {msg}\ninput: {input:?}"))
    })
}

fn credentials(secret: bool) -> Credentials {
    Credentials {
        client_id: "svc-€".into(),
        client_secret: secret.then(|| secrecy::SecretString::from("s3cr3t".to_string())),
        endpoints: Endpoints::for_realm("https://kc.example.com", "team-€"),
    }
}

/// Validate, render and plan `spec`: nothing may panic, and every validation error must name a `spec.` field.
fn validate_and_plan(spec: &KeycloakClientSpec, junk: Value, roles: Vec<String>) -> Result<(), TestCaseError> {
    let errors = no_panic("validate_client", spec, || validate_client(spec))?;
    for e in &errors {
        prop_assert!(!e.field.is_empty(), "error without a field: {e:?}");
        prop_assert!(e.to_string().starts_with("spec."), "error not naming a spec field: {e}");
        prop_assert!(!e.message.is_empty(), "error without a message: {e:?}");
    }
    for (i, extra) in spec.additional_secrets.iter().flatten().enumerate() {
        for public in [false, true] {
            let errs =
                no_panic("formats::validate_additional", extra, || formats::validate_additional(extra, i, public))?;
            for e in &errs {
                prop_assert!(!e.to_string().is_empty(), "format error without text: {e:?}");
            }
            no_panic("formats::render_additional", extra, || {
                let _ = formats::render_additional(extra, &credentials(!public), "team-€");
            })?;
        }
    }
    let owner = Owner { namespace: "ns".into(), name: "n".into(), uid: "u".into() };
    for who in [None, Some(&owner)] {
        let desired = no_panic("DesiredClient::from_spec", spec, || DesiredClient::from_spec(spec, who))?;
        for observed in observed_variants(&desired, junk.clone(), roles.clone()) {
            no_panic("plan_client", &observed, || plan_client(&desired, observed.as_ref()))?;
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    /// Validation is total: any spec serde accepts (long, multi-byte, hostile contents in every list
    /// and map) is validated, rendered and planned without a panic, and every error names a field.
    #[test]
    fn validation_is_total(v in any_spec(), junk in any_json(), roles in pool_names()) {
        // The generator only produces shapes serde accepts, so parsing must succeed.
        let spec: KeycloakClientSpec = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("generated spec does not parse: {e}\n{v:#}")))?;
        validate_and_plan(&spec, junk, roles)?;
    }

    /// Validation depends on the spec's content, not on its in-memory history: the spec that comes back
    /// from the API server (serialised and parsed again) gets the same verdict, error for error.
    #[test]
    fn validation_survives_a_serde_round_trip(v in any_spec()) {
        let spec: KeycloakClientSpec = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("generated spec does not parse: {e}\n{v:#}")))?;
        let text = serde_json::to_string(&spec).map_err(|e| TestCaseError::fail(format!("does not serialise: {e}")))?;
        let again: KeycloakClientSpec = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("own output does not parse: {e}\n{text}")))?;
        let first = no_panic("validate_client", &spec, || validate_client(&spec))?;
        let second = no_panic("validate_client", &again, || validate_client(&again))?;
        prop_assert_eq!(first, second);
    }

    /// Additional Secrets alone, many more of them: checking and rendering any entry (hostile key
    /// names and templates, for public and confidential clients) never panics, and errors have text.
    #[test]
    fn additional_secrets_never_panic(v in additional_secret(), public in any::<bool>()) {
        let extra: AdditionalSecret = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("generated entry does not parse: {e}\n{v:#}")))?;
        let errs = no_panic("formats::validate_additional", &extra, || formats::validate_additional(&extra, 0, public))?;
        for e in &errs {
            prop_assert!(!e.to_string().is_empty(), "format error without text: {e:?}");
        }
        no_panic("formats::render_additional", &extra, || {
            let _ = formats::render_additional(&extra, &credentials(!public), "team-€");
        })?;
    }

    #[test]
    fn arbitrary_json_never_panics_the_parser(v in any_json(), text in "\\PC{0,64}") {
        if let Ok(spec) = no_panic("serde_json::from_value", &v, || serde_json::from_value::<KeycloakClientSpec>(v.clone()))? {
            validate_and_plan(&spec, Value::Null, vec![])?;
        }
        if let Ok(spec) = no_panic("serde_json::from_str", &text, || serde_json::from_str::<KeycloakClientSpec>(&text))? {
            validate_and_plan(&spec, Value::Null, vec![])?;
        }
    }
}

// ---- Strategies: valid values ------------------------------------------------------------------

fn valid_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,14}[a-z0-9]"
}

fn valid_redirect() -> impl Strategy<Value = String> {
    prop_oneof![
        "https://[a-z]{1,10}\\.example\\.com(/[a-z0-9-]{1,8}){0,3}",
        "https://[a-z]{1,10}\\.example\\.com(/[a-z0-9-]{1,8}){0,2}/\\*",
        "http://localhost:[1-9][0-9]{3}/[a-z]{0,8}",
        "myapp[a-z]{0,4}://[a-z]{1,10}",
        "com\\.example\\.[a-z]{1,6}:\\*",
        "/[a-z]{1,8}(/[a-z]{1,8})?/?\\*?",
    ]
}

fn valid_origin() -> impl Strategy<Value = String> {
    prop_oneof![Just("+".to_string()), Just("*".to_string()), "https://[a-z]{1,10}\\.example\\.com(:[1-9][0-9]{2,3})?"]
}

fn unique(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Specs assembled only from parts every rule accepts.
fn valid_spec() -> impl Strategy<Value = Value> {
    (
        valid_name(),
        proptest::collection::vec(valid_redirect(), 0..4),
        proptest::collection::vec(valid_origin(), 0..3),
        proptest::collection::vec(valid_name(), 0..4),
        proptest::collection::vec(valid_name(), 0..4),
        any::<bool>(),
        proptest::option::of((
            1u32..400,
            prop_oneof![Just('s'), Just('m'), Just('h'), Just('d')],
            proptest::option::of((0u8..24, 0u8..60)),
            prop_oneof![Just("UTC"), Just("Europe/Amsterdam"), Just("America/New_York"), Just("Asia/Tokyo")],
        )),
        proptest::option::of(0i64..=i64::from(i32::MAX)),
    )
        .prop_flat_map(|base| (Just(base), valid_extras()))
        .prop_map(|((id, redirects, origins, scopes, roles, public, rotation, lifespan), extras)| {
            let scopes = unique(scopes);
            let (default, optional) = scopes.split_at(scopes.len() / 2);
            let mut spec = json!({
                "clientId": id, "realmRef": {"name": "realm"}, "publicClient": public,
                "redirectUris": unique(redirects), "webOrigins": unique(origins),
                "postLogoutRedirectUris": ["+"],
                "defaultClientScopes": default, "optionalClientScopes": optional,
                "clientRoles": unique(roles),
                "settings": {"serviceAccountsEnabled": !public, "accessTokenLifespan": lifespan},
            });
            if let Some((n, unit, time, tz)) = rotation {
                let mut r = json!({"enabled": !public, "rotationPeriod": format!("{n}{unit}"), "timezone": tz});
                if let Some((h, m)) = time {
                    r["rotationTime"] = json!(format!("{h:02}:{m:02}"));
                }
                spec["secretRotation"] = r;
            }
            let ValidExtras { mappers, audiences, sa_realm, sa_clients, attributes, name, description, authz } = extras;
            if let Some(m) = mappers {
                spec["protocolMappers"] = json!(
                    m.into_iter()
                        .map(|(n, t, c)| json!({
                            "name": n, "protocol": "openid-connect", "protocolMapper": t, "config": c
                        }))
                        .collect::<Vec<_>>()
                );
            }
            set_spec(&mut spec, "audiences", audiences.map(|v| json!(v)));
            // An attribute a typed setting manages is refused, set or not: scalar settings are always managed.
            let attributes = attributes.map(|mut a| {
                a.remove("access.token.lifespan");
                a
            });
            set_spec(&mut spec, "attributes", attributes.map(|v| json!(v)));
            set_spec(&mut spec, "clientName", name.map(|v| json!(v)));
            set_spec(&mut spec, "description", description.map(|v| json!(v)));
            if !public {
                if sa_realm.is_some() || sa_clients.is_some() {
                    let mut r = Map::new();
                    set(&mut r, "realmRoles", sa_realm.map(|v| json!(v)));
                    set(&mut r, "clientRoles", sa_clients.map(|v| json!(v)));
                    spec["serviceAccountRoles"] = Value::Object(r);
                }
                spec["settings"]["authorizationServicesEnabled"] = json!(authz);
            }
            spec
        })
}

fn set_spec(spec: &mut Value, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        spec[key] = v;
    }
}

/// Names every rule accepts: not blank, at most 255 characters, often multi-byte.
fn valid_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => valid_name(),
        3 => hostile_text(24),
        1 => (1usize..255).prop_map(|n| "€".repeat(n)),
        1 => (1usize..60).prop_map(|n| "👩\u{200D}💻".repeat(n / 3 + 1)),
    ]
    // Names travel as Admin API path segments: ".", ".." and control characters are refused.
    .prop_filter("blank, or not one path segment", |s| {
        !s.trim().is_empty() && s.chars().count() <= 255 && kco_keycloak::is_plain_segment(s)
    })
}

fn valid_texts(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set(valid_text(), 0..max).prop_map(|s| s.into_iter().collect())
}

/// A mapper's name, type and config.
type MapperParts = (String, String, BTreeMap<String, String>);

#[derive(Debug, Clone)]
struct ValidExtras {
    mappers: Option<Vec<MapperParts>>,
    audiences: Option<Vec<String>>,
    sa_realm: Option<Vec<String>>,
    sa_clients: Option<BTreeMap<String, Vec<String>>>,
    attributes: Option<BTreeMap<String, String>>,
    name: Option<String>,
    description: Option<String>,
    authz: bool,
}

fn valid_extras() -> impl Strategy<Value = ValidExtras> {
    let mappers = proptest::option::of(
        proptest::collection::btree_map(
            valid_text().prop_filter("audience prefix", |n| !n.starts_with("kco-audience-")),
            (
                prop_oneof![Just("oidc-hardcoded-claim-mapper".to_string()), valid_text()],
                proptest::collection::btree_map(valid_text(), hostile_text(30), 0..4),
            ),
            0..4,
        )
        .prop_map(|m| m.into_iter().map(|(n, (t, c))| (n, t, c)).collect::<Vec<_>>()),
    );
    let attributes = proptest::option::of(proptest::collection::btree_map(
        prop_oneof![
            Just("use.refresh.tokens".to_string()),
            Just("access.token.lifespan".to_string()),
            "x\\.[a-z€]{1,12}"
        ],
        prop_oneof![Just(String::new()), hostile_text(30), long_string()],
        0..4,
    ));
    (
        mappers,
        proptest::option::of(valid_texts(3)),
        proptest::option::of(valid_texts(4)),
        proptest::option::of(proptest::collection::btree_map(valid_text(), valid_texts(3), 0..3)),
        attributes,
        (proptest::option::of(prop_oneof![Just(String::new()), hostile_text(30)]), proptest::option::of(long_string())),
        any::<bool>(),
    )
        .prop_map(|(mappers, audiences, sa_realm, sa_clients, attributes, (name, description), authz)| {
            ValidExtras { mappers, audiences, sa_realm, sa_clients, attributes, name, description, authz }
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn valid_specs_are_accepted_and_planned_as_a_create(v in valid_spec()) {
        let spec: KeycloakClientSpec = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("does not parse: {e}")))?;
        let errors = validate_client(&spec);
        prop_assert!(errors.is_empty(), "valid spec refused: {:?}\n{:#}", errors, v);
        let plan = plan_client(&DesiredClient::from_spec(&spec, None), None);
        prop_assert!(
            plan.operations.iter().any(|o| matches!(o, ClientOperation::CreateClient { .. })),
            "no CreateClient in {:?}", plan
        );
    }
}

// ---- A model of Keycloak: what it returns after kco's operations ----------------------------------

/// The state of one client in a pure model of Keycloak's admin API, with the behaviour the plan must
/// cope with: ids, defaults and attributes Keycloak adds, fields it leaves out at their zero value,
/// realm default scopes, the service account's default role, `uma_protection`, and the conflicts it
/// answers 409/404 to.
#[derive(Debug, Clone, Default)]
struct Keycloak {
    rep: Map<String, Value>,
    client_roles: BTreeSet<String>,
    sa_realm: BTreeSet<String>,
    sa_clients: BTreeMap<String, BTreeSet<String>>,
    next_id: usize,
}

const REALM_DEFAULT_SCOPES: &[&str] = &["acr", "basic", "email", "profile", "roles", "web-origins"];
const REALM_OPTIONAL_SCOPES: &[&str] = &["address", "microprofile-jwt", "offline_access", "organization", "phone"];
/// Fields a client PUT does not change (they have endpoints of their own) or that Keycloak computes.
const NOT_PUT: &[&str] =
    &["id", "protocolMappers", "defaultClientScopes", "optionalClientScopes", "authorizationSettings", "access"];

impl Keycloak {
    fn id(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{}", self.next_id)
    }

    /// One top-level field as Keycloak stores and returns it.
    fn put_field(&mut self, key: &str, v: &Value) {
        match (key, v) {
            ("attributes", Value::Object(a)) => {
                let mut attrs = self.rep.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
                for (k, v) in a {
                    // An attribute set to "" is gone from the answer.
                    if v.as_str() == Some("") || v.is_null() {
                        attrs.remove(k);
                    } else {
                        attrs.insert(k.clone(), v.clone());
                    }
                }
                self.rep.insert("attributes".into(), Value::Object(attrs));
            }
            ("serviceAccountsEnabled", v) => {
                let was = self.rep.get(key) == Some(&json!(true));
                if v == &json!(true) && !was {
                    // A new service-account user comes with the realm's default role.
                    self.sa_realm = BTreeSet::from(["default-roles-realm".to_string()]);
                    self.sa_clients.clear();
                } else if v != &json!(true) {
                    self.sa_realm.clear();
                    self.sa_clients.clear();
                }
                self.rep.insert(key.into(), v.clone());
            }
            ("authorizationServicesEnabled", v) => {
                if v == &json!(true) {
                    self.client_roles.insert("uma_protection".into());
                    self.rep.insert(key.into(), v.clone());
                } else {
                    // Left out of the answer when false.
                    self.client_roles.remove("uma_protection");
                    self.rep.remove(key);
                }
            }
            ("redirectUris" | "webOrigins", Value::Array(a)) => {
                // Kept as a set: duplicates collapse, order is Keycloak's.
                let set: BTreeSet<String> = a.iter().filter_map(Value::as_str).map(str::to_string).collect();
                self.rep.insert(key.into(), json!(set.into_iter().rev().collect::<Vec<_>>()));
            }
            ("name" | "description" | "rootUrl" | "adminUrl" | "baseUrl", Value::String(s)) if s.is_empty() => {
                self.rep.remove(key);
            }
            _ => {
                self.rep.insert(key.into(), v.clone());
            }
        }
    }

    fn store_mapper(&mut self, mut m: Value) -> Value {
        let id = self.id("mapper");
        m["id"] = json!(id);
        let config = m.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut config = config;
        config.entry("userinfo.token.claim").or_insert(json!("true"));
        m["config"] = Value::Object(config);
        m
    }

    fn mappers(&mut self) -> &mut Vec<Value> {
        let m = self.rep.entry("protocolMappers").or_insert(json!([]));
        m.as_array_mut().unwrap()
    }

    fn scopes(&mut self, key: &str) -> &mut Vec<Value> {
        self.rep.entry(key).or_insert(json!([])).as_array_mut().unwrap()
    }

    fn linked(&self, scope: &str) -> bool {
        ["defaultClientScopes", "optionalClientScopes"]
            .iter()
            .any(|k| self.rep.get(*k).and_then(Value::as_array).is_some_and(|a| a.contains(&json!(scope))))
    }

    fn create(representation: &Value) -> Result<Self, String> {
        let mut kc = Keycloak::default();
        let rep = representation.as_object().ok_or("CreateClient without an object")?;
        let id = kc.id("client");
        kc.rep.insert("id".into(), json!(id));
        kc.rep.insert("surrogateAuthRequired".into(), json!(false));
        kc.rep.insert("nodeReRegistrationTimeout".into(), json!(-1));
        kc.rep.insert("access".into(), json!({"view": true, "configure": true, "manage": true}));
        kc.rep.insert(
            "attributes".into(),
            json!({"client.secret.creation.time": "1764000000", "backchannel.logout.session.required": "true", "realm_client": "false"}),
        );
        for (k, v) in rep {
            if !NOT_PUT.contains(&k.as_str()) {
                kc.put_field(k, v);
            }
        }
        let given = |k: &str| rep.get(k).and_then(Value::as_array).cloned();
        let (default, optional) = match (given("defaultClientScopes"), given("optionalClientScopes")) {
            (None, None) => (json!(REALM_DEFAULT_SCOPES), json!(REALM_OPTIONAL_SCOPES)),
            (d, o) => (json!(d.unwrap_or_default()), json!(o.unwrap_or_default())),
        };
        kc.rep.insert("defaultClientScopes".into(), default);
        kc.rep.insert("optionalClientScopes".into(), optional);
        let mut names = BTreeSet::new();
        for m in rep.get("protocolMappers").and_then(Value::as_array).into_iter().flatten() {
            let name = m.get("name").and_then(Value::as_str).unwrap_or_default();
            if !names.insert(name.to_string()) {
                return Err(format!("409: two mappers named {name:?} in the POST"));
            }
            let stored = kc.store_mapper(m.clone());
            kc.mappers().push(stored);
        }
        Ok(kc)
    }

    fn apply(mut self_: Option<Self>, ops: &[ClientOperation]) -> Result<Self, String> {
        for op in ops {
            if let ClientOperation::CreateClient { representation } = op {
                if self_.is_some() {
                    return Err("409: CreateClient for a client that exists".into());
                }
                self_ = Some(Keycloak::create(representation)?);
                continue;
            }
            let kc = self_.as_mut().ok_or_else(|| format!("404: {op:?} before the client exists"))?;
            kc.apply_one(op)?;
        }
        self_.ok_or_else(|| "no client after the plan".to_string())
    }

    fn apply_one(&mut self, op: &ClientOperation) -> Result<(), String> {
        use ClientOperation::*;
        let sa = self.rep.get("serviceAccountsEnabled") == Some(&json!(true));
        match op {
            CreateClient { .. } => unreachable!(),
            UpdateClient { representation, .. } => {
                let rep = representation.as_object().ok_or("UpdateClient without an object")?;
                for (k, v) in rep {
                    if !NOT_PUT.contains(&k.as_str()) {
                        self.put_field(k, v);
                    }
                }
            }
            AddDefaultScope(s) | AddOptionalScope(s) => {
                if self.linked(s) {
                    return Err(format!("409: scope {s:?} is already linked"));
                }
                let key = if matches!(op, AddDefaultScope(_)) { "defaultClientScopes" } else { "optionalClientScopes" };
                self.scopes(key).push(json!(s));
            }
            RemoveDefaultScope(s) | RemoveOptionalScope(s) => {
                let key =
                    if matches!(op, RemoveDefaultScope(_)) { "defaultClientScopes" } else { "optionalClientScopes" };
                let list = self.scopes(key);
                let before = list.len();
                list.retain(|v| v != &json!(s));
                if list.len() == before {
                    return Err(format!("404: scope {s:?} is not linked as {key}"));
                }
            }
            CreateMapper(m) => {
                let name = m.get("name").cloned().unwrap_or(Value::Null);
                if self.mappers().iter().any(|x| x.get("name") == Some(&name)) {
                    return Err(format!("409: a mapper named {name} exists"));
                }
                let stored = self.store_mapper(m.clone());
                self.mappers().push(stored);
            }
            UpdateMapper { id, representation } => {
                let slot = self.mappers().iter_mut().find(|x| x.get("id") == Some(&json!(id)));
                let slot = slot.ok_or_else(|| format!("404: no mapper with id {id}"))?;
                let mut rep = representation.clone();
                rep["id"] = json!(id);
                *slot = rep;
            }
            DeleteMapper { id, .. } => {
                let list = self.mappers();
                let before = list.len();
                list.retain(|x| x.get("id") != Some(&json!(id)));
                if list.len() == before {
                    return Err(format!("404: no mapper with id {id:?}"));
                }
            }
            CreateClientRole(r) => {
                if !self.client_roles.insert(r.clone()) {
                    return Err(format!("409: role {r:?} exists"));
                }
            }
            DeleteClientRole(r) => {
                if !self.client_roles.remove(r) {
                    return Err(format!("404: no role {r:?}"));
                }
            }
            GrantRealmRoles(roles) | RevokeRealmRoles(roles) => {
                if !sa {
                    return Err("404: no service-account user".into());
                }
                for r in roles {
                    if matches!(op, GrantRealmRoles(_)) {
                        self.sa_realm.insert(r.clone());
                    } else {
                        self.sa_realm.remove(r);
                    }
                }
            }
            GrantClientRoles { client_id, roles } | RevokeClientRoles { client_id, roles } => {
                if !sa {
                    return Err("404: no service-account user".into());
                }
                let have = self.sa_clients.entry(client_id.clone()).or_default();
                for r in roles {
                    if matches!(op, GrantClientRoles { .. }) {
                        have.insert(r.clone());
                    } else {
                        have.remove(r);
                    }
                }
            }
        }
        Ok(())
    }

    /// What `observe_client` reads: the GET answer (secret taken out) and, only when the spec manages
    /// them, the roles.
    fn observe(&self, desired: &DesiredClient) -> ObservedClient {
        let mut representation = Value::Object(self.rep.clone());
        representation.as_object_mut().unwrap().remove("secret");
        let mut o = ObservedClient { representation, ..ObservedClient::default() };
        if desired.client_roles.is_some() {
            o.client_roles = self.client_roles.iter().cloned().collect();
        }
        let sa_managed =
            desired.service_account_realm_roles.is_some() || desired.service_account_client_roles.is_some();
        if sa_managed && self.rep.get("serviceAccountsEnabled") == Some(&json!(true)) {
            if desired.service_account_realm_roles.is_some() {
                o.service_account_realm_roles = self.sa_realm.iter().cloned().collect();
            }
            for c in desired.service_account_client_roles.iter().flat_map(|m| m.keys()) {
                o.service_account_client_roles
                    .insert(c.clone(), self.sa_clients.get(c).into_iter().flatten().cloned().collect());
            }
        }
        o
    }
}

/// Changes made to a client behind kco's back (in the console, by another tool).
#[derive(Debug, Clone)]
enum Drift {
    SetField(usize, Value),
    RemoveField(usize),
    SetAttribute(usize, String),
    RemoveAttribute(usize),
    AddMapper(String, bool),
    ChangeMapperConfig(usize, String),
    ChangeMapperType(usize),
    MoveScope(usize),
    AddScope(String),
    UnlinkScope(usize),
    AddClientRole(String),
    RemoveClientRole(usize),
    AddRealmGrant(String),
    RemoveRealmGrant(usize),
    AddClientGrant(usize, String),
    Unknown(String, Value),
}

fn drift() -> impl Strategy<Value = Drift> {
    let small_json = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        hostile_text(12).prop_map(Value::String),
        proptest::collection::vec(hostile_text(8), 0..3).prop_map(|v| json!(v)),
        Just(Value::Null),
        any::<i32>().prop_map(|n| json!(n)),
    ];
    let idx = any::<prop::sample::Index>().prop_map(|i| i.index(1 << 16));
    prop_oneof![
        (idx.clone(), small_json.clone()).prop_map(|(i, v)| Drift::SetField(i, v)),
        idx.clone().prop_map(Drift::RemoveField),
        (idx.clone(), hostile_text(12)).prop_map(|(i, v)| Drift::SetAttribute(i, v)),
        idx.clone().prop_map(Drift::RemoveAttribute),
        (valid_text(), any::<bool>()).prop_map(|(n, a)| Drift::AddMapper(n, a)),
        (idx.clone(), hostile_text(12)).prop_map(|(i, v)| Drift::ChangeMapperConfig(i, v)),
        idx.clone().prop_map(Drift::ChangeMapperType),
        idx.clone().prop_map(Drift::MoveScope),
        valid_text().prop_map(Drift::AddScope),
        idx.clone().prop_map(Drift::UnlinkScope),
        valid_text().prop_map(Drift::AddClientRole),
        idx.clone().prop_map(Drift::RemoveClientRole),
        valid_text().prop_map(Drift::AddRealmGrant),
        idx.clone().prop_map(Drift::RemoveRealmGrant),
        (idx, valid_text()).prop_map(|(i, r)| Drift::AddClientGrant(i, r)),
        ("x[A-Za-z]{1,10}", small_json).prop_map(|(k, v)| Drift::Unknown(k, v)),
    ]
}

fn nth<T: Clone>(items: impl IntoIterator<Item = T>, i: usize) -> Option<T> {
    let v: Vec<T> = items.into_iter().collect();
    (!v.is_empty()).then(|| v[i % v.len()].clone())
}

impl Keycloak {
    fn drift(&mut self, d: &Drift, desired: &DesiredClient) {
        match d {
            Drift::SetField(i, v) => {
                if let Some(k) = nth(desired.fields.keys().cloned(), *i) {
                    self.put_field(&k, v);
                }
            }
            Drift::RemoveField(i) => {
                if let Some(k) = nth(self.rep.keys().filter(|k| !NOT_PUT.contains(&k.as_str())).cloned(), *i) {
                    if k == "serviceAccountsEnabled" || k == "authorizationServicesEnabled" {
                        self.put_field(&k, &json!(false));
                    }
                    self.rep.remove(&k);
                }
            }
            Drift::SetAttribute(i, v) => {
                let k = nth(desired.attributes.keys().cloned(), *i).unwrap_or_else(|| "x.drift".into());
                self.put_field("attributes", &json!({ k: v }));
            }
            Drift::RemoveAttribute(i) => {
                if let Some(Value::Object(a)) = self.rep.get_mut("attributes")
                    && let Some(k) = nth(a.keys().cloned(), *i)
                {
                    a.remove(&k);
                }
            }
            Drift::AddMapper(n, audience) => {
                let name = if *audience { format!("kco-audience-{n}") } else { n.clone() };
                if !self.mappers().iter().any(|m| m.get("name") == Some(&json!(name))) {
                    let m = self.store_mapper(
                        json!({"name": name, "protocol": "openid-connect", "protocolMapper": "oidc-audience-mapper", "config": {}}),
                    );
                    self.mappers().push(m);
                }
            }
            Drift::ChangeMapperConfig(i, v) => {
                let n = self.mappers().len();
                if n > 0 {
                    let m = &mut self.mappers()[i % n];
                    let key = m["config"].as_object().and_then(|c| nth(c.keys().cloned(), *i)).unwrap_or("k".into());
                    m["config"][key] = json!(v);
                }
            }
            Drift::ChangeMapperType(i) => {
                let n = self.mappers().len();
                if n > 0 {
                    self.mappers()[i % n]["protocolMapper"] = json!("oidc-hardcoded-role-mapper");
                }
            }
            Drift::MoveScope(i) => {
                let all: Vec<(bool, String)> = ["defaultClientScopes", "optionalClientScopes"]
                    .iter()
                    .enumerate()
                    .flat_map(|(j, k)| {
                        self.rep
                            .get(*k)
                            .and_then(Value::as_array)
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(move |v| v.as_str().map(|s| (j == 0, s.to_string())))
                    })
                    .collect();
                if let Some((was_default, s)) = nth(all, *i) {
                    let (from, to) = if was_default {
                        ("defaultClientScopes", "optionalClientScopes")
                    } else {
                        ("optionalClientScopes", "defaultClientScopes")
                    };
                    self.scopes(from).retain(|v| v != &json!(s));
                    self.scopes(to).push(json!(s));
                }
            }
            Drift::AddScope(s) => {
                if !self.linked(s) {
                    self.scopes("defaultClientScopes").push(json!(s));
                }
            }
            Drift::UnlinkScope(i) => {
                let list = self.scopes("optionalClientScopes");
                if !list.is_empty() {
                    let n = list.len();
                    list.remove(i % n);
                }
            }
            Drift::AddClientRole(r) => {
                self.client_roles.insert(r.clone());
            }
            Drift::RemoveClientRole(i) => {
                if let Some(r) = nth(self.client_roles.iter().cloned(), *i) {
                    self.client_roles.remove(&r);
                }
            }
            Drift::AddRealmGrant(r) => {
                if self.rep.get("serviceAccountsEnabled") == Some(&json!(true)) {
                    self.sa_realm.insert(r.clone());
                }
            }
            Drift::RemoveRealmGrant(i) => {
                if let Some(r) = nth(self.sa_realm.iter().cloned(), *i) {
                    self.sa_realm.remove(&r);
                }
            }
            Drift::AddClientGrant(i, r) => {
                if self.rep.get("serviceAccountsEnabled") == Some(&json!(true)) {
                    let c = nth(desired.service_account_client_roles.iter().flatten().map(|(k, _)| k.clone()), *i)
                        .unwrap_or_else(|| "other-client".into());
                    self.sa_clients.entry(c).or_default().insert(r.clone());
                }
            }
            Drift::Unknown(k, v) => {
                self.rep.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Plan against `kc`, apply the plan to the model, and return the model after it.
fn converge(desired: &DesiredClient, kc: Option<Keycloak>) -> Result<Keycloak, TestCaseError> {
    let observed = kc.as_ref().map(|k| k.observe(desired));
    let plan = no_panic("plan_client", &observed, || plan_client(desired, observed.as_ref()))?;
    Keycloak::apply(kc, &plan.operations)
        .map_err(|e| TestCaseError::fail(format!("Keycloak would refuse the plan: {e}\nplan: {plan:#?}")))
}

fn parse_valid(v: &Value) -> Result<KeycloakClientSpec, TestCaseError> {
    let spec: KeycloakClientSpec =
        serde_json::from_value(v.clone()).map_err(|e| TestCaseError::fail(format!("does not parse: {e}")))?;
    let errors = validate_client(&spec);
    prop_assert!(errors.is_empty(), "valid spec refused: {:?}\n{:#}", errors, v);
    Ok(spec)
}

proptest! {
    #![proptest_config(config(128))]

    /// The plan converges: a client created from the plan, as Keycloak stores and returns it, needs no
    /// further operation; and after arbitrary drift in Keycloak one plan, applied, brings it back to a
    /// state that plans nothing (so a reconcile of a settled client makes no writes).
    #[test]
    fn plan_is_empty_after_it_is_applied(v in valid_spec(), drifts in proptest::collection::vec(drift(), 0..8)) {
        let spec = parse_valid(&v)?;
        let owner = Owner { namespace: "ns".into(), name: "n".into(), uid: "u".into() };
        let desired = DesiredClient::from_spec(&spec, Some(&owner));

        let created = converge(&desired, None)?;
        let again = plan_client(&desired, Some(&created.observe(&desired)));
        prop_assert!(again.is_empty(), "plan after create is not empty: {:#?}\nKeycloak: {:#?}", again, created.rep);

        let mut drifted = created;
        for d in &drifts {
            drifted.drift(d, &desired);
        }
        drifted.rep.insert("xKcoUnmanaged".into(), json!({"kept": ["€", 1]}));
        let observed = drifted.observe(&desired);
        let plan = plan_client(&desired, Some(&observed));
        // Planning is a function of what it reads: the same state plans the same operations.
        prop_assert_eq!(&plan, &plan_client(&desired, Some(&observed)));
        // GET → merge → PUT keeps every field kco does not manage.
        for op in &plan.operations {
            if let ClientOperation::UpdateClient { representation, .. } = op {
                for (k, have) in drifted.rep.iter().filter(|(k, _)| !NOT_PUT.contains(&k.as_str())) {
                    if !desired.fields.contains_key(k) && k != "attributes" {
                        prop_assert_eq!(representation.get(k), Some(have), "PUT lost unmanaged field {}", k);
                    }
                }
                let attrs = representation.get("attributes").and_then(Value::as_object).cloned().unwrap_or_default();
                for (k, have) in drifted.rep.get("attributes").and_then(Value::as_object).into_iter().flatten() {
                    if desired.attributes.contains_key(k) {
                        continue;
                    }
                    if k.starts_with(kco_keycloak::SECRET_RECORD_PREFIX) {
                        // Keycloak's record of the secret is left out: it keeps it (the simulator does too).
                        prop_assert_eq!(attrs.get(k), None, "PUT sent the secret record {}", k);
                    } else {
                        prop_assert_eq!(attrs.get(k), Some(have), "PUT lost unmanaged attribute {}", k);
                    }
                }
            }
        }
        let settled = converge(&desired, Some(drifted))?;
        let after = plan_client(&desired, Some(&settled.observe(&desired)));
        prop_assert!(after.is_empty(), "plan after applying the drift plan is not empty: {:#?}\nKeycloak: {:#?}", after, settled.rep);
        prop_assert_eq!(settled.rep.get("xKcoUnmanaged"), Some(&json!({"kept": ["€", 1]})));
    }
}
