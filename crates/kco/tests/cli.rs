//! The CLI front: `kco validate` applies the operator's rules to files, so a mistake is caught before
//! `kubectl apply`. No cluster needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::path::Path;
use std::process::Command;

const KCO: &str = env!("CARGO_BIN_EXE_kco");

fn validate(file: &Path) -> (bool, String) {
    let out = Command::new(KCO).arg("validate").arg(file).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

#[test]
fn examples_are_valid() {
    for entry in std::fs::read_dir(repo().join("examples")).unwrap() {
        let (ok, out) = validate(&entry.unwrap().path());
        assert!(ok, "{out}");
    }
}

#[test]
fn a_manifest_written_for_the_reference_validates_after_no_change() {
    let dir = std::env::temp_dir().join(format!("kco-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spa.yaml");
    std::fs::write(
        &file,
        "apiVersion: vriesdemichael.github.io/v1\nkind: KeycloakClient\nmetadata:\n  name: spa\n  namespace: team-a\n\
         spec:\n  clientId: spa\n  realmRef:\n    name: team-a\n    namespace: team-a\n  publicClient: true\n\
         \x20 redirectUris:\n    - https://spa.example.com/*\n  settings:\n    pkceCodeChallengeMethod: S256\n",
    )
    .unwrap();
    let (ok, out) = validate(&file);
    assert!(ok, "{out}");
}

#[test]
fn every_operator_refused_corpus_manifest_fails_with_its_message() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("tests/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if !text.contains("# refused-by: operator") {
            continue;
        }
        let expect = text.lines().find_map(|l| l.strip_prefix("# expect: ")).unwrap();
        let (ok, out) = validate(&path);
        assert!(!ok, "{} passed kco validate", path.display());
        assert!(out.contains(expect), "{}: expected {expect:?} in {out}", path.display());
        n += 1;
    }
    assert!(n >= 30, "only {n} operator-refused manifests");
}
