//! kco: Keycloak OAuth2/OIDC clients as code. `kco run` is the operator; the other subcommands are
//! the CLI. Both drive the same engine (kco-engine).

mod cli;
mod http;
mod operator;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kco", version, about = "Keycloak clients as code: operator and CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator: watch KeycloakClients and keep Keycloak and their Secrets as declared.
    Run(operator::RunArgs),
    /// Print the CustomResourceDefinitions of every kco resource as YAML.
    Crd,
    /// Check KeycloakClient manifests with the operator's rules; exits 1 when any is invalid.
    Validate {
        /// YAML files or directories (multi-document files are fine; other kinds are skipped).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
    /// Create or update the clients of KeycloakClient manifests straight in Keycloak (no operator),
    /// and hand out their credentials. Exits 1 when any client failed.
    Apply(cli::apply::ApplyArgs),
    /// Show what `apply` would change. Exits 0 when nothing, 2 when changes are pending, 1 on error.
    Diff(cli::apply::PlanArgs),
    /// Delete the Keycloak clients of the manifests, only those kco owns (its owner mark).
    Delete(cli::apply::PlanArgs),
    /// Get a token with the client-credentials grant and show its claims; explains failures.
    Token(cli::token::TokenArgs),
    /// JSON Schemas of the resources (from the CRDs), for editors and yaml-language-server.
    Schema {
        /// Write keycloakclient.json, keycloakrealm.json and keycloakinstance.json here.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// Print this kind's schema to stdout (default: KeycloakClient).
        #[arg(long)]
        kind: Option<String>,
    },
    /// Rewrite reference manifests (vriesdemichael.github.io/v1) to kco.dev/v1 on stdout, reporting
    /// every field changed and why on stderr; exits 1 when a manifest still needs a fix.
    Convert(cli::convert::ConvertArgs),
    /// Shell completions for kco.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // kube and reqwest both use rustls: make aws-lc-rs the one process-wide provider before either starts.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // A panic is a bug in kco: one line, no backtrace. The operator catches it per reconcile (the
    // object fails, the process goes on); the CLI catches it per manifest.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message: String = info.payload_as_str().unwrap_or("panic without a message").chars().take(300).collect();
        eprintln!("kco: internal error{at}: {message}; this is a bug in kco, please report it");
    }));
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_tracing(&args.log_format);
            operator::run(args).await
        }
        Command::Crd => cli::print_crds(),
        Command::Validate { files } => {
            if !cli::validate_files(&files)? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Apply(args) => exit_with(cli::apply::apply(args).await),
        Command::Diff(args) => exit_with(cli::apply::diff(args).await),
        Command::Delete(args) => exit_with(cli::apply::delete(args).await),
        Command::Token(args) => exit_with(cli::token::token(args).await),
        Command::Convert(args) => exit_with(cli::convert::convert(&args)),
        Command::Schema { dir, kind } => cli::print_schemas(dir.as_deref(), kind.as_deref()),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "kco", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// A CLI command's exit code; an error is printed as one `kco: …` line and exits 1.
fn exit_with(result: anyhow::Result<i32>) -> anyhow::Result<()> {
    match result {
        Ok(0) => Ok(()),
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kco: {e:#}");
            std::process::exit(1);
        }
    }
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A panic's message, shortened to 300 characters (it may quote the object's own strings).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic without a message".to_string());
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}
