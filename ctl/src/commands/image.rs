//! `image import`: upload an image archive (OCI layout or `docker save` tarball) to a node
//! through the API server (nodes/proxy) and have its agent import it, with progress:
//! `skiffctl image import app.tar --node node-1`.

use std::{io::IsTerminal, path::PathBuf};

use clap::{Args, Subcommand};
use futures::StreamExt;
use skiff_api::proto::{ImageUpload, ImageUploadStart, image_upload};
use tokio::{io::AsyncReadExt, sync::mpsc};

use crate::{error::CtlError, printers, session::Session};

/// Bytes per upload message.
const CHUNK: usize = 1 << 20;

/// `skiffctl image`.
#[derive(Args, Debug)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// What to do with images.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Upload an image archive (OCI layout or docker save .tar) to a node and import it
    #[command(
        after_help = "Examples:\n  skiffctl image import app.tar --node node-1\n  docker save app:1 -o app.tar && skiffctl image import app.tar --node node-1"
    )]
    Import(ImportArgs),
}

/// `skiffctl image import`.
#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The archive
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The node to import on
    #[arg(long, value_name = "NODE", required = true)]
    pub node: String,
}

/// `12.3 MiB`.
pub fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// One progress line: bytes sent of the total, and the node's phase.
pub fn progress_line(received: u64, total: u64, phase: &str) -> String {
    match received.saturating_mul(100).checked_div(total) {
        Some(percent) => format!(
            "{phase}: {} / {} ({percent}%)",
            mebibytes(received),
            mebibytes(total)
        ),
        None => format!("{phase}: {}", mebibytes(received)),
    }
}

/// Runs `image`.
///
/// # Errors
/// An unreadable file, the server refusing, or the node failing to import.
pub async fn run(session: &Session, args: &ImageArgs) -> Result<(), CtlError> {
    let ImageCommand::Import(args) = &args.command;
    let mut file = tokio::fs::File::open(&args.file)
        .await
        .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", args.file.display())))?;
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (tx, rx) = mpsc::channel(4);
    let start = ImageUpload {
        upload: Some(image_upload::Upload::Start(ImageUploadStart {
            node: args.node.clone(),
            file_name: file_name.clone(),
            size,
        })),
    };
    let _ = tx.send(start).await;
    let sender = tokio::spawn(async move {
        let mut buffer = vec![0u8; CHUNK];
        loop {
            match file.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let chunk = ImageUpload {
                        upload: Some(image_upload::Upload::Data(buffer[..n].to_vec())),
                    };
                    if tx.send(chunk).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut progress = session
        .client()
        .import_image(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| session.fail(e))?;
    let terminal = std::io::stderr().is_terminal();
    let mut last_phase = String::new();
    let mut images = Vec::new();
    while let Some(update) = progress.next().await {
        let update = match update {
            Ok(update) => update,
            Err(error) => {
                sender.abort();
                if terminal {
                    eprintln!();
                }
                return Err(session.fail(error));
            }
        };
        let line = progress_line(update.received, size, &update.phase);
        if terminal {
            eprint!("\r\x1b[K{line}");
        } else if update.phase != last_phase {
            eprintln!("{line}");
        }
        last_phase = update.phase.clone();
        if update.phase == "done" {
            images = update.images;
        }
    }
    if terminal {
        eprintln!();
    }
    if images.is_empty() {
        return Err(CtlError::usage(format!(
            "the import of {file_name} on node {} ended without importing an image",
            args.node
        )));
    }
    for image in images {
        printers::write_stdout(&format!("imported {image} on node {}\n", args.node));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_in_mebibytes_with_a_percentage_when_the_size_is_known() {
        assert_eq!(
            progress_line(3 << 20, 12 << 20, "receiving"),
            "receiving: 3.0 MiB / 12.0 MiB (25%)"
        );
        assert_eq!(progress_line(1 << 19, 0, "importing"), "importing: 0.5 MiB");
    }
}
