//! `kco schema` and `kco completions`: no cluster, no Keycloak.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::process::Command;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

#[test]
fn schema_writes_a_json_schema_per_resource_from_the_crds() {
    let dir = std::env::temp_dir().join(format!("kco-schema-{}", std::process::id()));
    let out = Command::new(KCO).args(["schema", "--dir", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for kind in ["keycloakclient", "keycloakrealm", "keycloakinstance"] {
        let text = std::fs::read_to_string(dir.join(format!("{kind}.json"))).unwrap();
        let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(schema["type"], "object", "{kind}");
        let versions = schema["properties"]["apiVersion"]["enum"].as_array().unwrap();
        assert!(versions.contains(&"kco.dev/v1".into()) && versions.contains(&"vriesdemichael.github.io/v1".into()));
    }
    let client: serde_json::Value = serde_json::from_slice(
        &Command::new(KCO).args(["schema", "--kind", "KeycloakClient"]).output().unwrap().stdout,
    )
    .unwrap();
    assert!(client["properties"]["spec"]["properties"]["clientId"].is_object(), "{client}");
    assert_eq!(client["properties"]["spec"]["required"], serde_json::json!(["clientId", "realmRef"]));
}

#[test]
fn completions_for_each_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(KCO).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        for sub in ["apply", "diff", "delete", "token", "schema"] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
}
