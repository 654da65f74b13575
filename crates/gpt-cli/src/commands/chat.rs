use super::generate::SamplingArgs;
use crate::common::{load, ModelArgs};
use anyhow::{anyhow, Result};
use gpt::infer::chat_template::Message;
use gpt::infer::Generator;
use std::io::{BufRead, Write};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  gpt chat                                   (interactive; /reset clears, /quit or Ctrl-D leaves)\n  gpt chat --message \"What is the capital of France?\" --temperature 0\n  gpt chat --system \"You are a pirate.\" --message \"Hello\""
)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// A system message (otherwise the template's default, if any).
    #[arg(long)]
    pub system: Option<String>,
    /// Send one message, print the reply and exit.
    #[arg(long)]
    pub message: Option<String>,
    /// Print the rendered prompt (the template's output) to stderr.
    #[arg(long)]
    pub show_prompt: bool,
}

pub fn run(a: Args) -> Result<()> {
    let m = load(&a.model)?;
    // A model without a template is a base model: a made-up chat format would only confuse it.
    let template = m.chat_template.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{} has no chat template (tokenizer.chat_template): it is a base model; use `gpt generate` to continue text",
            m.source.display()
        )
    })?;
    let opts = a.sampling.options(&m)?;
    let mut g = Generator::new(&m.transformer, &m.tokenizer);
    let mut history: Vec<Message> = a.system.iter().map(|s| Message::new("system", s)).collect();
    let mut turn = |history: &mut Vec<Message>, text: &str| -> Result<()> {
        history.push(Message::new("user", text));
        if a.show_prompt {
            eprintln!("{}", template.render(history, true)?);
        }
        // What the user types is text: only the template's markup becomes control tokens.
        let ids = template.encode(&m.tokenizer, history, true)?;
        let mut out = std::io::stdout().lock();
        let r = g.generate(&ids, &opts, &mut |piece| {
            let _ = write!(out, "{piece}");
            let _ = out.flush();
            true
        })?;
        writeln!(out)?;
        history.push(Message::new("assistant", &r.text));
        Ok(())
    };
    if let Some(msg) = &a.message {
        return turn(&mut history, msg);
    }
    let stdin = std::io::stdin();
    let base = history.clone();
    eprintln!(
        "{} — type a message; /reset to start over, /quit to leave.",
        m.description
    );
    loop {
        eprint!("> ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| anyhow!("reading stdin: {e}"))?
            == 0
        {
            return Ok(());
        }
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => return Ok(()),
            "/reset" => history = base.clone(),
            text => {
                if let Err(e) = turn(&mut history, text) {
                    eprintln!("error: {e:#}");
                    history.pop();
                }
            }
        }
    }
}
