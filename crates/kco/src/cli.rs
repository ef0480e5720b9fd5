//! CLI subcommands that need no cluster.

use std::io::Write;

/// `kco crd`: every CRD as one multi-document YAML stream (what is committed under deploy/crds/).
pub fn print_crds() -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for (i, crd) in kco_api::crds().iter().enumerate() {
        if i > 0 {
            writeln!(out, "---")?;
        }
        write!(out, "{}", serde_saphyr::to_string(crd)?)?;
    }
    Ok(())
}
