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
        /// YAML files (multi-document files are fine; other kinds are skipped).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

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
