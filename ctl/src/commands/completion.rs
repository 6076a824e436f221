//! `completion SHELL`: the shell completion script clap generates from the command line
//! definition, so it always knows every verb and flag.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;

/// `skiffctl completion`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  source <(skiffctl completion bash)\n  skiffctl completion zsh > \"${fpath[1]}/_skiffctl\"\n  skiffctl completion fish > ~/.config/fish/completions/skiffctl.fish"
)]
pub struct CompletionArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    pub shell: Shell,
}

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "skiffctl", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bash_script_completes_the_verbs() {
        let script = script(Shell::Bash);
        assert!(script.contains("_skiffctl"));
        for verb in ["apply", "get", "describe", "delete"] {
            assert!(script.contains(verb), "{verb} missing");
        }
    }
}
