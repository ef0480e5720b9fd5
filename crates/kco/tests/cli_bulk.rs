//! Bulk `kco apply`: 200 manifests (and one broken one) under a real terminal (tmux) show a progress
//! bar and the summary table; piped, the same command prints no bar. The real Keycloak throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::string_slice)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kco_testing::{Env, unique};

const KCO: &str = env!("CARGO_BIN_EXE_kco");

fn write_manifests(realm: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kco-bulk-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("000-realm.yaml"),
        format!("apiVersion: kco.dev/v1\nkind: KeycloakRealm\nmetadata:\n  name: realm\nspec:\n  realmName: {realm}\n  instanceRef:\n    name: local\n"),
    )
    .unwrap();
    for i in 0..200 {
        std::fs::write(
            dir.join(format!("client-{i:03}.yaml")),
            format!(
                "apiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: app-{i}\nspec:\n  clientId: app-{i}\n\
                 \x20 realmRef:\n    name: realm\n  publicClient: true\n  redirectUris: [\"https://app-{i}.example.com/*\"]\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("zzz-broken.yaml"),
        "apiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: broken\nspec:\n  clientId: broken\n  realmRef:\n    name: realm\n  publicClient: true\n  redirectUris: [\"not a uri\"]\n",
    )
    .unwrap();
    dir
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The count of one row of the summary table.
fn row(summary: &str, label: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(label)).then(|| w.next()).flatten().and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no {label} row in {summary}"))
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is installed (apt-get install tmux)")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "bulk", "-S", "-"]).stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[tokio::test]
async fn two_hundred_manifests_show_a_bar_on_a_terminal_and_a_summary_and_none_when_piped() {
    let env = Env::connect().await;
    let realm = format!("cli-bulk-{}", unique());
    let dir = write_manifests(&realm);
    let done = dir.join("exit-code");

    // Under a real terminal: a private tmux server, the environment handed over explicitly.
    let vars: Vec<String> = ["KEYCLOAK_URL", "KEYCLOAK_ADMIN_USER", "KEYCLOAK_ADMIN_PASSWORD"]
        .iter()
        .map(|k| format!("{k}={}", shell_quote(&std::env::var(k).unwrap())))
        .collect();
    let script = format!(
        "env {} {} apply -f {} --concurrency 4; echo $? > {}; sleep 600",
        vars.join(" "),
        shell_quote(KCO),
        shell_quote(dir.to_str().unwrap()),
        shell_quote(done.to_str().unwrap())
    );
    let tmux = Tmux { socket: format!("kco-bulk-{}", unique()) };
    let started = tmux.cmd(&["new-session", "-d", "-s", "bulk", "-x", "160", "-y", "40", &script]);
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    let mut saw_bar = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !Path::new(&done).exists() || std::fs::read_to_string(&done).unwrap().trim().is_empty() {
        assert!(Instant::now() < deadline, "bulk apply did not finish:\n{}", tmux.capture());
        // The bar: "<bar> N/201" while the run is under way.
        if !saw_bar && tmux.capture().lines().any(|l| l.contains("/201")) {
            saw_bar = true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let screen = tmux.capture();
    assert!(saw_bar, "no progress bar was seen on the terminal:\n{screen}");
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), "1", "one manifest is broken:\n{screen}");
    let summary = screen.split("Summary").nth(1).unwrap_or_else(|| panic!("no summary:\n{screen}"));
    assert_eq!(row(summary, "created"), 200, "{summary}");
    assert_eq!(row(summary, "failed"), 1, "{summary}");
    assert!(summary.contains("KeycloakClient default/broken") && summary.contains("spec.redirectUris[0]"), "{summary}");

    // Piped: no bar, no terminal control codes; the summary still closes the run.
    let out = Command::new(KCO).args(["apply", "-f", dir.to_str().unwrap(), "--concurrency", "8"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains('\x1b') && !stderr.contains('\r'), "piped output has terminal codes: {stderr:?}");
    assert!(!stderr.contains("/201"), "piped output shows a bar: {stderr}");
    assert_eq!(row(&stderr, "unchanged"), 200, "{stderr}");
    assert!(stderr.contains(", 0 writes"), "a second bulk apply makes no Keycloak write: {stderr}");
    // 200 clients are a weight on the Keycloak every test shares: bulk delete removes them (only the
    // broken one, never created, fails), then the empty realm goes.
    let out = Command::new(KCO).args(["delete", "-f", dir.to_str().unwrap(), "--concurrency", "8"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(row(&stderr, "deleted"), 200, "{stderr}");
    env.keycloak_send(reqwest::Method::DELETE, &realm, None).await;
}

#[tokio::test]
async fn diff_is_coloured_on_a_terminal() {
    let _env = Env::connect().await;
    // A realm that does not exist yet: diff plans it and the client, and writes nothing.
    let dir = std::env::temp_dir().join(format!("kco-diff-tty-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("c.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: kco.dev/v1\nkind: KeycloakRealm\nmetadata:\n  name: realm\nspec:\n  realmName: cli-tty-{}\n  instanceRef:\n    name: local\n---\n\
             apiVersion: kco.dev/v1\nkind: KeycloakClient\nmetadata:\n  name: app\nspec:\n  clientId: app\n  realmRef:\n    name: realm\n  publicClient: true\n",
            unique()
        ),
    )
    .unwrap();
    let done = dir.join("exit-code");
    let vars: Vec<String> = ["KEYCLOAK_URL", "KEYCLOAK_ADMIN_USER", "KEYCLOAK_ADMIN_PASSWORD"]
        .iter()
        .map(|k| format!("{k}={}", shell_quote(&std::env::var(k).unwrap())))
        .collect();
    let script = format!(
        "env {} {} diff -f {}; echo $? > {}; sleep 600",
        vars.join(" "),
        shell_quote(KCO),
        shell_quote(file.to_str().unwrap()),
        shell_quote(done.to_str().unwrap())
    );
    let tmux = Tmux { socket: format!("kco-diff-{}", unique()) };
    assert!(tmux.cmd(&["new-session", "-d", "-s", "bulk", "-x", "160", "-y", "40", &script]).status.success());
    let code = kco_testing::wait_for("diff under tmux", Duration::from_secs(120), || async {
        std::fs::read_to_string(&done).ok().filter(|c| !c.trim().is_empty())
    })
    .await;
    assert_eq!(code.trim(), "2", "changes pending");
    // -e keeps the colours: additions green.
    let screen = String::from_utf8_lossy(&tmux.cmd(&["capture-pane", "-e", "-p", "-t", "bulk"]).stdout).into_owned();
    assert!(screen.contains("\x1b[32m"), "no colour on a terminal: {screen:?}");
    assert!(screen.contains("+ client \"app\""), "{screen}");
}
