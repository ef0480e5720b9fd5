//! Property tests over parse → validate → plan, bounded so they run on every `cargo test` (and so in
//! CI) in a few seconds:
//!
//! - specs of every shape, full of hostile strings (wildcards, `{{`, whitespace, huge numbers, unknown
//!   time zones, dangling references): parsing, validating and planning never panic, and every
//!   validation error names a `spec.` field;
//! - arbitrary JSON and text never make the spec parser panic;
//! - specs built only from valid parts are accepted by validation, and a plan for them creates the client.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::collections::BTreeMap;

use kco_api::KeycloakClientSpec;
use kco_engine::{ClientOperation, DesiredClient, ObservedClient, Owner, plan_client, validate_client};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

fn config(cases: u32) -> Config {
    Config { cases, failure_persistence: None, ..Config::default() }
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
    let scopes = proptest::option::of(proptest::collection::vec(pool_name().prop_map(|n| json!({"name": n})), 0..4));
    let resource = (pool_name(), nasty_list(), pool_names(), proptest::option::of(nasty_string())).prop_map(
        |(n, uris, scopes, ty)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(n));
            m.insert("uris".into(), json!(uris.unwrap_or_default()));
            m.insert("scopes".into(), json!(scopes));
            set(&mut m, "type", ty.map(|v| json!(v)));
            Value::Object(m)
        },
    );
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
    let secret = (
        nasty_string(),
        proptest::option::of(prop_oneof![Just("mlflow"), Just("phoenix"), Just("otel-collector")]),
        proptest::option::of(proptest::collection::btree_map(
            nasty_string(),
            prop_oneof![
                Just("{{clientId}}".to_string()),
                Just("{{clientSecret}}".to_string()),
                Just("{{ realm }}".to_string()),
                Just("{{nope}}".to_string()),
                Just("{{clientId".to_string()),
                nasty_string()
            ],
            0..3,
        )),
        string_map(),
    )
        .prop_map(|(name, format, keys, labels)| {
            let mut m = Map::new();
            m.insert("name".into(), json!(name));
            set(&mut m, "format", format.map(|v| json!(v)));
            set(&mut m, "keys", keys.map(|v| json!(v)));
            set(&mut m, "labels", labels.map(|v| json!(v)));
            Value::Object(m)
        });
    proptest::option::of(proptest::collection::vec(secret, 0..3).prop_map(Value::Array))
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
    (identity, uris, settings(), lists, roles, secrets, proptest::option::of(authorization())).prop_map(
        |(identity, uris, settings, lists, roles, secrets, authz)| {
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
        }),
    ]
}

/// Validate and plan `spec`; nothing may panic, and every error must name a `spec.` field.
fn validate_and_plan(spec: &KeycloakClientSpec, junk: Value, roles: Vec<String>) -> Result<(), TestCaseError> {
    for e in validate_client(spec) {
        prop_assert!(!e.field.is_empty(), "error without a field: {e:?}");
        prop_assert!(e.to_string().starts_with("spec."), "error not naming a spec field: {e}");
        prop_assert!(!e.message.is_empty(), "error without a message: {e:?}");
    }
    let owner = Owner { namespace: "ns".into(), name: "n".into(), uid: "u".into() };
    for who in [None, Some(&owner)] {
        let desired = DesiredClient::from_spec(spec, who);
        for observed in observed_variants(&desired, junk.clone(), roles.clone()) {
            let _ = plan_client(&desired, observed.as_ref());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn hostile_specs_never_panic(v in any_spec(), junk in any_json(), roles in pool_names()) {
        // The generator only produces shapes serde accepts, so parsing must succeed.
        let spec: KeycloakClientSpec = serde_json::from_value(v.clone())
            .map_err(|e| TestCaseError::fail(format!("generated spec does not parse: {e}\n{v:#}")))?;
        validate_and_plan(&spec, junk, roles)?;
        // Validation is a pure function of the spec.
        prop_assert_eq!(validate_client(&spec), validate_client(&spec));
    }

    #[test]
    fn arbitrary_json_never_panics_the_parser(v in any_json(), text in "\\PC{0,64}") {
        if let Ok(spec) = serde_json::from_value::<KeycloakClientSpec>(v) {
            validate_and_plan(&spec, Value::Null, vec![])?;
        }
        if let Ok(spec) = serde_json::from_str::<KeycloakClientSpec>(&text) {
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
        .prop_map(|(id, redirects, origins, scopes, roles, public, rotation, lifespan)| {
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
            spec
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
