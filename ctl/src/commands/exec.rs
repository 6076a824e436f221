//! `exec`: run a command in a container through the API server (pods/exec), like
//! kubectl: `skiffctl exec [-i] [-t] POD [-c C] -- CMD...`, stdin passed with `-i`, a raw
//! terminal with `-t`, and the command's exit code as skiffctl's own.

use std::{io::Write, os::fd::AsRawFd};

use clap::Args;
use futures::StreamExt;
use skiff_api::proto::{ExecInput, ExecStart, TerminalSize, exec_input, exec_output};
use tokio::{io::AsyncReadExt, sync::mpsc};

use crate::{
    commands::logs::{container, pod_name},
    error::CtlError,
    session::Session,
};

/// `skiffctl exec`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl exec web -- ls /\n  skiffctl exec -it web -c app -- sh\n  echo hi | skiffctl exec -i web -- cat"
)]
pub struct ExecArgs {
    /// Pass stdin to the command
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Run the command on a terminal (stdin must be one)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The container (default: the pod's only one, else its default container)
    #[arg(short = 'c', long, value_name = "NAME")]
    pub container: Option<String>,
    /// The pod: NAME or pod/NAME
    #[arg(value_name = "POD")]
    pub pod: String,
    /// The command and its arguments (after `--`)
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        required = true
    )]
    pub command: Vec<String>,
}

/// The terminal's size, if stdin is one.
fn terminal_size() -> Option<TerminalSize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
    let ok = unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ok == 0 && size.ws_col > 0).then_some(TerminalSize {
        width: u32::from(size.ws_col),
        height: u32::from(size.ws_row),
    })
}

/// Puts the terminal on stdin in raw mode until dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        let fd = std::io::stdin().as_raw_fd();
        // SAFETY: an all-zero termios is a valid buffer for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `fd` is stdin and `saved` a termios we own.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the struct it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: `raw` is a valid termios derived from the terminal's own.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read from this same terminal.
        unsafe { libc::tcsetattr(std::io::stdin().as_raw_fd(), libc::TCSANOW, &self.saved) };
    }
}

/// Copies stdin to the exec, then says it ended.
async fn send_stdin(input: mpsc::Sender<ExecInput>) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let message = match stdin.read(&mut buffer).await {
            Ok(0) | Err(_) => exec_input::Input::StdinClosed(true),
            Ok(n) => exec_input::Input::Stdin(buffer[..n].to_vec()),
        };
        let end = matches!(message, exec_input::Input::StdinClosed(_));
        if input
            .send(ExecInput {
                input: Some(message),
            })
            .await
            .is_err()
            || end
        {
            return;
        }
    }
}

/// Sends the terminal's new size on every SIGWINCH.
async fn send_resizes(input: mpsc::Sender<ExecInput>) {
    let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Some(size) = terminal_size() {
            let message = ExecInput {
                input: Some(exec_input::Input::Resize(size)),
            };
            if input.send(message).await.is_err() {
                return;
            }
        }
    }
}

fn write_all(mut out: impl Write, bytes: &[u8]) {
    let _ = out.write_all(bytes).and_then(|()| out.flush());
}

/// Runs `exec`; returns the command's exit code.
///
/// # Errors
/// From the server (no such pod or container, not running, forbidden, node unreachable).
pub async fn run(session: &Session, args: &ExecArgs) -> Result<i32, CtlError> {
    let pod = pod_name(&args.pod)?;
    let container = container(session, &pod, args.container.as_deref()).await?;
    let stdin_is_terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let tty = args.tty && stdin_is_terminal;
    if args.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let (input, inputs) = mpsc::channel(16);
    let start = ExecStart {
        namespace: session.namespace().to_string(),
        pod,
        pod_uid: String::new(),
        container,
        command: args.command.clone(),
        stdin: args.stdin,
        tty,
        size: if tty { terminal_size() } else { None },
    };
    input
        .send(ExecInput {
            input: Some(exec_input::Input::Start(start)),
        })
        .await
        .map_err(|_| CtlError::usage("the exec stream closed before it started"))?;
    let mut outputs = session
        .client()
        .pod_exec(tokio_stream::wrappers::ReceiverStream::new(inputs))
        .await
        .map_err(|e| session.fail(e))?;
    let raw = if tty && args.stdin {
        RawMode::enter()
    } else {
        None
    };
    let mut helpers = Vec::new();
    if args.stdin {
        helpers.push(tokio::spawn(send_stdin(input.clone())));
    }
    if tty {
        helpers.push(tokio::spawn(send_resizes(input.clone())));
    }
    // Without -i the exec's input ends here, but the stream stays open while it runs.
    let _keep = input;
    let mut code = None;
    let mut failure = None;
    while let Some(output) = outputs.next().await {
        match output {
            Ok(exec_output::Output::Stdout(bytes)) => write_all(std::io::stdout(), &bytes),
            Ok(exec_output::Output::Stderr(bytes)) => write_all(std::io::stderr(), &bytes),
            Ok(exec_output::Output::ExitCode(exit)) => {
                code = Some(exit);
                break;
            }
            Err(error) => {
                failure = Some(session.fail(error));
                break;
            }
        }
    }
    drop(raw);
    for helper in helpers {
        helper.abort();
    }
    if let Some(failure) = failure {
        return Err(failure);
    }
    code.ok_or_else(|| {
        CtlError::usage("the exec ended without an exit code: the connection to the node was lost")
    })
}
