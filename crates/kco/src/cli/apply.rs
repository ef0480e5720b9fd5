//! `kco apply`, `kco diff` and `kco delete`: KeycloakClient manifests straight against a Keycloak,
//! through the operator's own steps (kco_engine::converge). No Kubernetes is needed unless
//! `--to-secret` asks for a Secret.
//!
//! Ownership: a client the CLI creates carries the operator's owner attribute (`kco.dev/owner`) with
//! the value `NAMESPACE/NAME/cli` (the manifest's namespace, or `--namespace`, its name, and the fixed
//! uid `cli`). So a later `kco apply` of the same manifest finds it as its own, `kco delete` deletes only
//! such clients, and the operator (whose owners carry real object uids) never takes them silently —
//! nor the CLI the operator's.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kco_api::{Endpoints, KeycloakClientSpec, KeycloakRealmSpec};
use kco_engine::converge::{Prepared, apply_prepared, check_spec, desired_client, find_existing, prepare};
use kco_engine::plan::{ClientOperation, Ownership, ownership};
use kco_engine::secret::Credentials;
use kco_engine::{EngineError, Owner};
use kco_keycloak::{ErrorKind, KeycloakAdmin};
use secrecy::SecretString;
use serde_json::Value;

use super::keycloak::{KeycloakArgs, request_counts};
use super::manifests::{ClientManifest, Manifests, load};
use super::output::{FormatKind, OutputKind, Rendered, emit, parse_ref, render, to_text, write_secret};

/// The uid part of the owner attribute of clients the CLI manages.
pub const CLI_OWNER_UID: &str = "cli";

#[derive(clap::Args, Debug)]
pub struct ManifestArgs {
    /// Manifest files or directories (their .yaml/.yml/.json files, recursively); `-` reads stdin.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Keycloak realm for clients whose realmRef names a KeycloakRealm that is not among the manifests
    /// (the realm must exist).
    #[arg(long)]
    pub realm: Option<String>,
    /// Namespace of manifests that have none (it is part of the owner mark).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// How many clients are worked on at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    #[command(flatten)]
    pub keycloak: KeycloakArgs,
    /// Print the credentials: env lines, JSON (one object per client) or Secret manifests.
    #[arg(long, value_enum)]
    pub output: Option<OutputKind>,
    /// Key names of a consumer instead of the managed Secret's (client-id, client-secret, issuer, …).
    #[arg(long, value_enum)]
    pub format: Option<FormatKind>,
    /// Write the credentials to this file (created with mode 0600) instead of stdout.
    #[arg(long, requires = "output")]
    pub output_file: Option<PathBuf>,
    /// Write the credentials into this Kubernetes Secret (kube config from KUBECONFIG or in-cluster);
    /// only with a single KeycloakClient.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    pub to_secret: Option<String>,
}

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    #[command(flatten)]
    pub manifests: ManifestArgs,
    #[command(flatten)]
    pub keycloak: KeycloakArgs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Apply,
    Diff,
    Delete,
}

/// What happened to (or would happen to) one client.
enum Verdict {
    Created,
    Updated(Vec<String>),
    Unchanged,
    Deleted,
    /// Nothing to delete: the client does not exist.
    Absent,
    /// `diff`: the changes that apply would make (empty: none).
    Plan(Vec<DiffLine>),
    Failed(String),
}

struct DiffLine {
    sign: char,
    text: String,
}

struct Report {
    key: String,
    /// The file it came from.
    source: String,
    verdict: Verdict,
    notes: Vec<String>,
    credentials: Option<(Credentials, String, String, String)>,
}

struct Shared {
    admin: KeycloakAdmin,
    manifests: Manifests,
    realm_arg: Option<String>,
    public_url: String,
    want_credentials: bool,
    /// Realms this run has made sure of, so concurrent clients of a new realm create it once.
    realms: tokio::sync::Mutex<BTreeSet<String>>,
}

pub async fn apply(args: ApplyArgs) -> anyhow::Result<i32> {
    let to_secret = args.to_secret.as_deref().map(|s| parse_ref(s, "--to-secret")).transpose()?;
    let want = args.output.is_some() || to_secret.is_some();
    if args.format.is_some() && !want {
        anyhow::bail!("--format needs --output or --to-secret: say where the credentials go");
    }
    let kube = match &to_secret {
        // Built before any Keycloak write: a missing kube config must not leave a half-done apply.
        Some(_) => Some(kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("--to-secret: no Kubernetes client ({e}); set KUBECONFIG or run in a cluster")
        })?),
        None => None,
    };
    let (shared, metrics) = shared(&args.manifests, &args.keycloak, want)?;
    if to_secret.is_some() && shared.manifests.clients.len() != 1 {
        anyhow::bail!(
            "--to-secret writes one Secret: give exactly one KeycloakClient (found {})",
            shared.manifests.clients.len()
        );
    }
    let reports = run(shared, Mode::Apply, args.manifests.concurrency).await;
    let failed = reports.iter().any(|r| matches!(r.verdict, Verdict::Failed(_)));
    let mut rendered = Vec::new();
    for r in &reports {
        if let Some((creds, realm, ns, secret_name)) = &r.credentials {
            rendered.push(Rendered {
                namespace: ns.clone(),
                secret_name: secret_name.clone(),
                data: render(creds, realm, args.format)?,
            });
        }
    }
    if let (Some((ns, name)), Some(kube), Some(one)) = (&to_secret, &kube, rendered.first()) {
        let wrote = write_secret(kube, ns, name, &one.data).await?;
        eprintln!("Secret {ns}/{name}: {}", if wrote { "written" } else { "unchanged" });
    }
    if let Some(kind) = args.output
        && !rendered.is_empty()
    {
        emit(&to_text(kind, &rendered)?, args.output_file.as_deref())?;
    }
    summary(&reports, Mode::Apply, &metrics);
    Ok(i32::from(failed))
}

pub async fn diff(args: PlanArgs) -> anyhow::Result<i32> {
    let (shared, metrics) = shared(&args.manifests, &args.keycloak, false)?;
    let reports = run(shared, Mode::Diff, args.manifests.concurrency).await;
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut text = String::new();
    let mut pending = false;
    let mut failed = false;
    for r in &reports {
        match &r.verdict {
            Verdict::Plan(lines) if lines.is_empty() => text.push_str(&format!("  {}: no changes\n", r.key)),
            Verdict::Plan(lines) => {
                pending = true;
                text.push_str(&paint(color, "1", &format!("~ {}\n", r.key)));
                for l in lines {
                    let code = match l.sign {
                        '+' => "32",
                        '-' => "31",
                        _ => "33",
                    };
                    text.push_str(&paint(color, code, &format!("    {} {}\n", l.sign, l.text)));
                }
            }
            Verdict::Failed(why) => {
                failed = true;
                text.push_str(&paint(color, "31", &format!("! {}: {why}\n", r.key)));
            }
            _ => {}
        }
        for n in &r.notes {
            text.push_str(&format!("    note: {n}\n"));
        }
    }
    emit(&text, None)?;
    let (reads, writes) = request_counts(&metrics);
    eprintln!("Keycloak: {reads} reads, {writes} writes");
    Ok(if failed {
        1
    } else if pending {
        2
    } else {
        0
    })
}

pub async fn delete(args: PlanArgs) -> anyhow::Result<i32> {
    let (shared, metrics) = shared(&args.manifests, &args.keycloak, false)?;
    let reports = run(shared, Mode::Delete, args.manifests.concurrency).await;
    let failed = reports.iter().any(|r| matches!(r.verdict, Verdict::Failed(_)));
    summary(&reports, Mode::Delete, &metrics);
    Ok(i32::from(failed))
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        let body = s.trim_end_matches('\n');
        let nl = if s.ends_with('\n') { "\n" } else { "" };
        format!("\x1b[{code}m{body}\x1b[0m{nl}")
    } else {
        s.to_string()
    }
}

fn shared(
    m: &ManifestArgs,
    k: &KeycloakArgs,
    want_credentials: bool,
) -> anyhow::Result<(Shared, kco_keycloak::RequestMetrics)> {
    let manifests = load(&m.files, &m.namespace)?;
    if manifests.clients.is_empty() {
        anyhow::bail!(
            "no KeycloakClient manifest in {}",
            m.files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let metrics = kco_keycloak::RequestMetrics::default();
    let admin = k.admin(metrics.clone())?;
    let public_url = k.public_url.clone().unwrap_or_else(|| k.keycloak_url.clone());
    let shared = Shared {
        admin,
        manifests,
        realm_arg: m.realm.clone(),
        public_url,
        want_credentials,
        realms: tokio::sync::Mutex::new(BTreeSet::new()),
    };
    Ok((shared, metrics))
}

/// Work on every client, `concurrency` at a time; reports come back in manifest order. A progress
/// bar shows on a terminal (stderr) only.
async fn run(shared: Shared, mode: Mode, concurrency: u16) -> Vec<Report> {
    let shared = Arc::new(shared);
    let total = shared.manifests.clients.len();
    let bar = if std::io::stderr().is_terminal() && total > 1 {
        let bar = indicatif::ProgressBar::new(u64::try_from(total).unwrap_or(u64::MAX));
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40.cyan/blue} {pos}/{len} {msg}") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let work = (0..total).map(|i| {
        let shared = shared.clone();
        let bar = bar.clone();
        async move {
            let report = match shared.manifests.clients.get(i) {
                Some(m) => one(&shared, m, mode).await,
                None => Report {
                    key: String::new(),
                    source: String::new(),
                    verdict: Verdict::Failed("no such manifest".into()),
                    notes: vec![],
                    credentials: None,
                },
            };
            if mode != Mode::Diff {
                let line = line_of(&report);
                if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) }
            }
            bar.inc(1);
            (i, report)
        }
    });
    let mut done: Vec<(usize, Report)> =
        futures::stream::iter(work).buffer_unordered(usize::from(concurrency)).collect().await;
    bar.finish_and_clear();
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn line_of(r: &Report) -> String {
    let what = match &r.verdict {
        Verdict::Created => "created".to_string(),
        Verdict::Updated(fields) => format!("updated ({})", fields.join(", ")),
        Verdict::Unchanged => "unchanged".to_string(),
        Verdict::Deleted => "deleted".to_string(),
        Verdict::Absent => "not found in Keycloak, nothing to delete".to_string(),
        Verdict::Plan(_) => "planned".to_string(),
        Verdict::Failed(why) => format!("FAILED: {why}"),
    };
    let mut line = format!("{}: {what}", r.key);
    for n in &r.notes {
        line.push_str(&format!("\n  note: {n}"));
    }
    line
}

/// The closing table: how many of each outcome, the reason of each failure, and the Keycloak
/// requests made (writes counted apart, so "nothing to do" is visibly zero writes).
fn summary(reports: &[Report], mode: Mode, metrics: &kco_keycloak::RequestMetrics) {
    let count = |f: fn(&Verdict) -> bool| reports.iter().filter(|r| f(&r.verdict)).count();
    let rows: Vec<(&str, usize)> = match mode {
        Mode::Delete => vec![
            ("deleted", count(|v| matches!(v, Verdict::Deleted))),
            ("absent", count(|v| matches!(v, Verdict::Absent))),
            ("failed", count(|v| matches!(v, Verdict::Failed(_)))),
        ],
        _ => vec![
            ("created", count(|v| matches!(v, Verdict::Created))),
            ("updated", count(|v| matches!(v, Verdict::Updated(_)))),
            ("unchanged", count(|v| matches!(v, Verdict::Unchanged))),
            ("failed", count(|v| matches!(v, Verdict::Failed(_)))),
        ],
    };
    let mut out = String::from("\nSummary\n");
    for (label, n) in rows {
        out.push_str(&format!("  {label:<10} {n:>6}\n"));
    }
    let failures: Vec<&Report> = reports.iter().filter(|r| matches!(r.verdict, Verdict::Failed(_))).collect();
    if !failures.is_empty() {
        out.push_str("Failures\n");
        for r in failures {
            if let Verdict::Failed(why) = &r.verdict {
                out.push_str(&format!("  {} ({}): {why}\n", r.key, r.source));
            }
        }
    }
    let (reads, writes) = request_counts(metrics);
    out.push_str(&format!("Keycloak: {reads} reads, {writes} writes\n"));
    eprint!("{out}");
}

async fn one(shared: &Shared, m: &ClientManifest, mode: Mode) -> Report {
    let mut report = Report {
        key: m.key(),
        source: m.source.clone(),
        verdict: Verdict::Unchanged,
        notes: Vec::new(),
        credentials: None,
    };
    // A panic is kco's bug: this manifest fails, the others go on.
    let work = std::panic::AssertUnwindSafe(one_inner(shared, m, mode, &mut report));
    let result = futures::FutureExt::catch_unwind(work).await;
    report.verdict = match result {
        Ok(Ok(v)) => v,
        Ok(Err(why)) => Verdict::Failed(why),
        Err(p) => Verdict::Failed(format!(
            "kco hit an internal error ({}); this is a bug in kco, please report it",
            crate::panic_message(p.as_ref())
        )),
    };
    report
}

async fn one_inner(shared: &Shared, m: &ClientManifest, mode: Mode, report: &mut Report) -> Result<Verdict, String> {
    let spec = m.spec.as_ref().map_err(Clone::clone)?;
    let realm = shared.manifests.realm_for(m, spec, shared.realm_arg.as_deref())?;
    let realm_name = realm.realm_name.clone();
    let owner = Owner { namespace: m.namespace.clone(), name: m.name.clone(), uid: CLI_OWNER_UID.to_string() };
    let engine = |e: EngineError| e.to_string();
    let keycloak = |e: kco_keycloak::Error| format!("Keycloak: {e}");
    if mode == Mode::Delete {
        return delete_one(shared, spec, &realm_name, &owner).await;
    }
    check_spec(spec).map_err(engine)?;
    let over_reach = kco_engine::guard::check_against_realm(spec, &realm);
    if !over_reach.is_empty() {
        return Err(over_reach.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "));
    }
    if spec.client_secret.is_some() {
        return Err("spec.clientSecret takes the secret from a Kubernetes Secret, which kco apply does not read; \
                    remove it to let Keycloak generate the secret, or manage this client with the operator"
            .into());
    }
    if spec.secret_rotation.as_ref().is_some_and(|r| r.enabled) {
        report.notes.push("spec.secretRotation is not carried out by kco apply (it needs the operator's schedule); the secret stays as it is".into());
    }
    if spec.regenerate_secret {
        report.notes.push("spec.regenerateSecret is not carried out by kco apply; the secret stays as it is".into());
    }
    let existing = match find_existing(&shared.admin, &realm_name, &spec.client_id, None).await {
        Err(e) if e.kind == ErrorKind::NotFound => {
            if mode == Mode::Diff {
                let mut lines = vec![DiffLine { sign: '+', text: format!("realm {realm_name}") }];
                if !realm.create_realm {
                    return Err(format!(
                        "realm {realm_name} does not exist in Keycloak; create it, or include a KeycloakRealm with createRealm: true"
                    ));
                }
                lines.push(DiffLine { sign: '+', text: format!("client {:?} in realm {realm_name}", spec.client_id) });
                return Ok(Verdict::Plan(lines));
            }
            ensure_realm(shared, &realm).await?;
            None
        }
        other => other.map_err(keycloak)?,
    };
    let desired = desired_client(&shared.admin, &realm_name, spec, &owner).await.map_err(engine)?;
    let prepared = prepare(&shared.admin, &realm_name, desired, existing, &owner, m.adopt).await.map_err(engine)?;
    if mode == Mode::Diff {
        let mut lines = diff_lines(&prepared, &realm_name);
        if let (Some(id), Some(authz)) = (&prepared.existing_id, kco_engine::authz::DesiredAuthz::from_spec(spec)) {
            let changed =
                kco_engine::converge::plan_authz_changes(&shared.admin, &realm_name, id, &spec.client_id, &authz)
                    .await
                    .map_err(engine)?;
            lines.extend(changed.into_iter().map(|f| DiffLine { sign: '~', text: f }));
        }
        return Ok(Verdict::Plan(lines));
    }
    let outcome = apply_prepared(&shared.admin, &realm_name, spec, &prepared, realm.allow_admin_role_grants)
        .await
        .map_err(engine)?;
    if shared.want_credentials {
        let secret: Option<SecretString> = if spec.public_client {
            None
        } else {
            // The secret read with the client is current unless this apply changed the client.
            match prepared.observed.as_ref().and_then(|o| o.secret.clone()).filter(|_| prepared.plan.is_empty()) {
                Some(s) => Some(s),
                None => Some(shared.admin.client_secret(&realm_name, &outcome.internal_id).await.map_err(keycloak)?),
            }
        };
        let creds = Credentials {
            client_id: spec.client_id.clone(),
            client_secret: secret,
            endpoints: Endpoints::for_realm(&shared.public_url, &realm_name),
        };
        let secret_name = spec.secret_name.clone().unwrap_or_else(|| format!("{}-credentials", m.name));
        report.credentials = Some((creds, realm_name.clone(), m.namespace.clone(), secret_name));
    }
    Ok(if outcome.created {
        Verdict::Created
    } else if outcome.changed_fields.is_empty() {
        Verdict::Unchanged
    } else {
        Verdict::Updated(outcome.changed_fields)
    })
}

/// Make sure the realm exists, creating it when its KeycloakRealm allows (once per run).
async fn ensure_realm(shared: &Shared, realm: &KeycloakRealmSpec) -> Result<(), String> {
    let name = &realm.realm_name;
    let mut known = shared.realms.lock().await;
    if known.contains(name) {
        return Ok(());
    }
    let keycloak = |e: kco_keycloak::Error| format!("Keycloak: {e}");
    if !shared.admin.realm_exists(name).await.map_err(keycloak)? {
        if !realm.create_realm {
            return Err(format!(
                "realm {name} does not exist in Keycloak; create it, or include a KeycloakRealm with createRealm: true"
            ));
        }
        match shared.admin.create_realm(name).await {
            Err(e) if e.kind == ErrorKind::Conflict => {}
            other => other.map_err(keycloak)?,
        }
        eprintln!("created realm {name} in Keycloak");
    }
    known.insert(name.clone());
    Ok(())
}

async fn delete_one(shared: &Shared, spec: &KeycloakClientSpec, realm: &str, owner: &Owner) -> Result<Verdict, String> {
    let found = match shared.admin.find_client(realm, &spec.client_id).await {
        Ok(found) => found,
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(format!("Keycloak: {e}")),
    };
    let Some(c) = found else { return Ok(Verdict::Absent) };
    if let Ownership::Foreign(who) = ownership(&c, owner, false) {
        return Err(format!(
            "client {:?} in realm {realm} belongs to {who}, not to this manifest; kco deletes only clients it owns",
            spec.client_id
        ));
    }
    let id = c.get("id").and_then(Value::as_str).ok_or("Keycloak's answer has no client id")?;
    shared.admin.delete_client(realm, id).await.map_err(|e| format!("Keycloak: {e}"))?;
    Ok(Verdict::Deleted)
}

/// The plan as lines a person reads: each changed field with its value now and after.
fn diff_lines(p: &Prepared, realm: &str) -> Vec<DiffLine> {
    let short = |v: &Value| {
        let s = v.to_string();
        if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
    };
    let have = p.observed.as_ref().map(|o| &o.representation);
    let mut lines = Vec::new();
    for op in &p.plan.operations {
        use ClientOperation::*;
        let (sign, text) = match op {
            CreateClient { .. } => ('+', format!("client {:?} in realm {realm}", p.desired.client_id)),
            UpdateClient { changed, .. } => {
                for field in changed {
                    let (now, after) = match field.strip_prefix("attributes.") {
                        Some(attr) => (
                            have.and_then(|h| h.get("attributes"))
                                .and_then(|a| a.get(attr))
                                .cloned()
                                .unwrap_or(Value::Null),
                            p.desired.attributes.get(attr).map(|s| Value::String(s.clone())).unwrap_or(Value::Null),
                        ),
                        None => (
                            have.and_then(|h| h.get(field)).cloned().unwrap_or(Value::Null),
                            p.desired.fields.get(field).cloned().unwrap_or(Value::Null),
                        ),
                    };
                    lines.push(DiffLine { sign: '-', text: format!("{field}: {}", short(&now)) });
                    lines.push(DiffLine { sign: '+', text: format!("{field}: {}", short(&after)) });
                }
                continue;
            }
            AddDefaultScope(s) => ('+', format!("default client scope {s}")),
            RemoveDefaultScope(s) => ('-', format!("default client scope {s}")),
            AddOptionalScope(s) => ('+', format!("optional client scope {s}")),
            RemoveOptionalScope(s) => ('-', format!("optional client scope {s}")),
            CreateMapper(rep) => {
                ('+', format!("protocol mapper {}", rep.get("name").and_then(Value::as_str).unwrap_or("?")))
            }
            UpdateMapper { representation, .. } => {
                ('~', format!("protocol mapper {}", representation.get("name").and_then(Value::as_str).unwrap_or("?")))
            }
            DeleteMapper { name, .. } => ('-', format!("protocol mapper {name}")),
            CreateClientRole(r) => ('+', format!("client role {r}")),
            DeleteClientRole(r) => ('-', format!("client role {r}")),
            GrantRealmRoles(r) => ('+', format!("service account realm roles {}", r.join(", "))),
            RevokeRealmRoles(r) => ('-', format!("service account realm roles {}", r.join(", "))),
            GrantClientRoles { client_id, roles } => {
                ('+', format!("service account roles of {client_id}: {}", roles.join(", ")))
            }
            RevokeClientRoles { client_id, roles } => {
                ('-', format!("service account roles of {client_id}: {}", roles.join(", ")))
            }
        };
        lines.push(DiffLine { sign, text });
    }
    lines
}
