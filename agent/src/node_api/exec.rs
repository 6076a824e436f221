//! Exec for the node API: a command run in a running container through containerd's task
//! Exec, its stdin, stdout and stderr through FIFOs the agent makes (the shim opens them),
//! a terminal when asked for, and the exit status passed back last.

use std::{
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use futures::{Stream, StreamExt};
use serde_json::Value;
use skiff_api::{
    proto::{ExecInput, ExecOutput, ExecStart, exec_input, exec_output},
    status::{ApiError, Reason},
};
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::unix::pipe, sync::mpsc};
use tonic::Status;
use tracing::{debug, warn};

use crate::runtime::{
    ContainerRecord, Runtime, RuntimeError, TaskState,
    containerd::{Containerd, ExecIo},
    labels,
};

/// How long the output may take to drain after the command exited.
const DRAIN: Duration = Duration::from_secs(10);

/// The id of the running container `container` of the pod with `uid` (its newest attempt).
pub fn running_container(
    records: &[ContainerRecord],
    uid: &str,
    container: &str,
) -> Option<String> {
    records
        .iter()
        .filter(|r| {
            r.labels.get(labels::POD_UID).map(String::as_str) == Some(uid)
                && r.labels.get(labels::CONTAINER).map(String::as_str) == Some(container)
                && matches!(r.task, TaskState::Running { .. })
        })
        .max_by_key(|r| {
            r.labels
                .get(labels::ATTEMPT)
                .and_then(|a| a.parse::<u32>().ok())
                .unwrap_or_default()
        })
        .map(|r| r.id.clone())
}

/// The process to exec: the container's own (`base`: user, env, cwd, capabilities) with
/// `command` instead of its args, on a terminal of `size` when `tty`.
pub fn exec_process(
    base: &Value,
    command: &[String],
    tty: bool,
    size: Option<(u32, u32)>,
) -> Value {
    let mut process = match base {
        Value::Object(_) => base.clone(),
        _ => serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/", "env": []}),
    };
    process["args"] = serde_json::json!(command);
    process["terminal"] = Value::Bool(tty);
    match size {
        Some((width, height)) if tty && width > 0 && height > 0 => {
            process["consoleSize"] = serde_json::json!({"width": width, "height": height});
        }
        _ => {
            if let Some(object) = process.as_object_mut() {
                object.remove("consoleSize");
            }
        }
    }
    process
}

/// Makes a FIFO at `path`.
fn mkfifo(path: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(std::io::Error::other)?;
    // SAFETY: `c` is a NUL-terminated path that lives across the call.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// One output FIFO: our read end, and a write end we hold so that reads do not see an end
/// before the shim has opened its own.
struct OutputFifo {
    reader: pipe::Receiver,
    keepalive: std::fs::File,
}

fn output_fifo(path: &Path) -> std::io::Result<OutputFifo> {
    mkfifo(path)?;
    let read = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let keepalive = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(OutputFifo {
        reader: pipe::Receiver::from_file(read)?,
        keepalive,
    })
}

/// Copies a FIFO to the client until its end.
async fn pump(
    mut reader: pipe::Receiver,
    out: mpsc::Sender<Result<ExecOutput, Status>>,
    wrap: fn(Vec<u8>) -> exec_output::Output,
) {
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let message = ExecOutput {
                    output: Some(wrap(buffer[..n].to_vec())),
                };
                if out.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Bytes written to a FIFO that its reader has not taken yet.
fn unread(pipe: &pipe::Sender) -> usize {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `pending`, which we own; the fd is open.
    let ok = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut pending) };
    if ok == 0 {
        usize::try_from(pending).unwrap_or(0)
    } else {
        0
    }
}

/// Ends the command's input: once the shim has read what was written, containerd's
/// CloseIO closes the process's stdin (the shim holds the FIFO open itself, so closing our
/// end alone is no end of input).
async fn close_stdin(pipe: pipe::Sender, runtime: &Containerd, id: &str, exec_id: &str) {
    let deadline = tokio::time::Instant::now() + DRAIN;
    while unread(&pipe) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(pipe);
    runtime.exec_close_stdin(id, exec_id).await;
}

fn runtime_error(error: RuntimeError) -> ApiError {
    ApiError::new(Reason::InternalError, error.to_string())
}

/// Runs `start` in its container, feeding it `inbound` (stdin, resizes) and sending its
/// output and exit code to `out`.
///
/// # Errors
/// When the container is not running or containerd refuses the exec; once the command
/// runs, failures end the stream instead.
pub async fn run(
    runtime: Containerd,
    exec_dir: PathBuf,
    start: ExecStart,
    inbound: impl Stream<Item = ExecInput> + Send + Unpin + 'static,
    out: mpsc::Sender<Result<ExecOutput, Status>>,
) -> Result<(), ApiError> {
    let records = runtime.list().await.map_err(runtime_error)?;
    let id = running_container(&records, &start.pod_uid, &start.container).ok_or_else(|| {
        ApiError::new(
            Reason::BadRequest,
            format!(
                "container {} in pod {} is not running",
                start.container, start.pod
            ),
        )
    })?;
    let base = runtime
        .container_process(&id)
        .await
        .map_err(runtime_error)?;
    let size = start.size.as_ref().map(|s| (s.width, s.height));
    let process = exec_process(&base, &start.command, start.tty, size);
    let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
    let dir = exec_dir.join(&exec_id);
    let io_error = |e: std::io::Error| {
        ApiError::internal(format!(
            "making the exec's FIFOs in {}: {e}",
            exec_dir.display()
        ))
    };
    std::fs::create_dir_all(&dir).map_err(io_error)?;
    let result = run_in(&runtime, &id, &exec_id, &dir, &start, process, inbound, out).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    runtime: &Containerd,
    id: &str,
    exec_id: &str,
    dir: &Path,
    start: &ExecStart,
    process: Value,
    mut inbound: impl Stream<Item = ExecInput> + Send + Unpin + 'static,
    out: mpsc::Sender<Result<ExecOutput, Status>>,
) -> Result<(), ApiError> {
    let io_error = |e: std::io::Error| ApiError::internal(format!("making the exec's FIFOs: {e}"));
    let path = |name: &str| dir.join(name).display().to_string();
    let stdout = output_fifo(&dir.join("stdout")).map_err(io_error)?;
    let stderr = if start.tty {
        None
    } else {
        Some(output_fifo(&dir.join("stderr")).map_err(io_error)?)
    };
    let stdin = if start.stdin {
        mkfifo(&dir.join("stdin")).map_err(io_error)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.join("stdin"))
            .map_err(io_error)?;
        Some(pipe::Sender::from_file(file).map_err(io_error)?)
    } else {
        None
    };
    let io = ExecIo {
        stdin: if start.stdin {
            path("stdin")
        } else {
            String::new()
        },
        stdout: path("stdout"),
        stderr: if start.tty {
            String::new()
        } else {
            path("stderr")
        },
        terminal: start.tty,
    };
    let mut keepalives = vec![stdout.keepalive];
    let mut pumps = vec![tokio::spawn(pump(
        stdout.reader,
        out.clone(),
        exec_output::Output::Stdout,
    ))];
    if let Some(stderr) = stderr {
        keepalives.push(stderr.keepalive);
        pumps.push(tokio::spawn(pump(
            stderr.reader,
            out.clone(),
            exec_output::Output::Stderr,
        )));
    }
    runtime
        .exec_start(id, exec_id, &process, &io)
        .await
        .map_err(|e| ApiError::new(Reason::BadRequest, e.to_string()))?;
    debug!(container = id, exec = exec_id, command = ?start.command, "exec started");
    let input = {
        let (runtime, id, exec_id) = (runtime.clone(), id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(message) = inbound.next().await {
                match message.input {
                    Some(exec_input::Input::Stdin(bytes)) => {
                        if let Some(pipe) = stdin.as_mut()
                            && pipe.write_all(&bytes).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(exec_input::Input::StdinClosed(_)) => {
                        if let Some(pipe) = stdin.take() {
                            close_stdin(pipe, &runtime, &id, &exec_id).await;
                        }
                    }
                    Some(exec_input::Input::Resize(size)) => {
                        let _ = runtime
                            .exec_resize(&id, &exec_id, size.width, size.height)
                            .await;
                    }
                    Some(exec_input::Input::Start(_)) | None => {}
                }
            }
        })
    };
    let status = tokio::select! {
        status = runtime.exec_wait(id, exec_id) => status,
        () = out.closed() => {
            // The caller went away: the command goes too.
            runtime.exec_kill(id, exec_id, libc::SIGKILL as u32).await;
            runtime.exec_wait(id, exec_id).await
        }
    };
    runtime.exec_delete(id, exec_id).await;
    drop(keepalives);
    for pump in pumps {
        if tokio::time::timeout(DRAIN, pump).await.is_err() {
            warn!(
                container = id,
                exec = exec_id,
                "the exec's output did not end"
            );
        }
    }
    input.abort();
    let code = status.map_err(runtime_error)?;
    let _ = out
        .send(Ok(ExecOutput {
            output: Some(exec_output::Output::ExitCode(
                i32::try_from(code).unwrap_or(i32::MAX),
            )),
        }))
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn record(id: &str, uid: &str, name: &str, attempt: u32, task: TaskState) -> ContainerRecord {
        ContainerRecord {
            id: id.into(),
            labels: BTreeMap::from([
                (labels::POD_UID.to_string(), uid.to_string()),
                (labels::CONTAINER.to_string(), name.to_string()),
                (labels::ATTEMPT.to_string(), attempt.to_string()),
            ]),
            task,
        }
    }

    #[test]
    fn exec_finds_the_running_attempt_of_the_named_container() {
        let records = vec![
            record(
                "a0",
                "u1",
                "app",
                0,
                TaskState::Exited {
                    exit_code: 1,
                    exited_at: 0,
                },
            ),
            record("a1", "u1", "app", 1, TaskState::Running { pid: 10 }),
            record("s0", "u1", "sidecar", 0, TaskState::Running { pid: 11 }),
            record("b0", "u2", "app", 0, TaskState::Running { pid: 12 }),
        ];
        assert_eq!(
            running_container(&records, "u1", "app").as_deref(),
            Some("a1")
        );
        assert_eq!(
            running_container(&records, "u2", "app").as_deref(),
            Some("b0")
        );
        assert_eq!(running_container(&records, "u1", "nope"), None);
        let exited = vec![record("a0", "u1", "app", 0, TaskState::NotRunning)];
        assert_eq!(running_container(&exited, "u1", "app"), None);
    }

    #[test]
    fn the_exec_process_keeps_the_containers_user_env_and_cwd_with_the_new_command() {
        let base = json!({
            "args": ["sleep", "3600"], "env": ["PATH=/bin", "A=1"], "cwd": "/www",
            "user": {"uid": 1000, "gid": 1000}, "terminal": false,
            "capabilities": {"bounding": ["CAP_KILL"]},
        });
        let command = vec!["sh".to_string(), "-c".to_string(), "id".to_string()];
        let process = exec_process(&base, &command, true, Some((80, 24)));
        assert_eq!(process["args"], json!(["sh", "-c", "id"]));
        assert_eq!(process["env"], base["env"]);
        assert_eq!(process["cwd"], "/www");
        assert_eq!(process["user"]["uid"], 1000);
        assert_eq!(process["terminal"], true);
        assert_eq!(process["consoleSize"], json!({"width": 80, "height": 24}));
        assert_eq!(process["capabilities"], base["capabilities"]);
        let plain = exec_process(&Value::Null, &command, false, Some((80, 24)));
        assert_eq!(plain["terminal"], false);
        assert!(plain.get("consoleSize").is_none());
        assert_eq!(plain["cwd"], "/");
    }
}
