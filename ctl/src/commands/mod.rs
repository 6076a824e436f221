//! The verbs. Each module holds one verb's flags (a clap `Args` struct) and its `run`;
//! [`run`] connects (when the verb needs a cluster) and dispatches.

pub mod api_resources;
pub mod apply;
pub mod completion;
pub mod create;
pub mod dataplane;
pub mod delete;
pub mod describe;
pub mod exec;
pub mod get;
pub mod image;
pub mod logs;
pub mod rollout;
pub mod scale;
pub mod top;

use crate::{
    cli::{Cli, Command},
    error::CtlError,
    printers,
    session::Session,
};

/// Runs the command line's verb.
///
/// # Errors
/// Whatever the verb fails with.
pub async fn run(cli: Cli) -> Result<(), CtlError> {
    match &cli.command {
        Command::Completion(args) => {
            printers::write_stdout(&completion::script(args.shell));
            return Ok(());
        }
        Command::ApiResources(args) => {
            api_resources::run(args);
            return Ok(());
        }
        Command::Dataplane(args) => return dataplane::run(args),
        Command::Create(args) if create::is_client_dry_run(args) => {
            let namespace = cli.connection.namespace.as_deref().unwrap_or("default");
            return create::run(None, namespace, args).await;
        }
        _ => {}
    }
    let session = Session::connect(&cli.connection)?;
    match &cli.command {
        Command::Apply(args) => apply::run(&session, args).await,
        Command::Create(args) => create::run(Some(&session), session.namespace(), args).await,
        Command::Get(args) => get::run(&session, args).await,
        Command::Describe(args) => describe::run(&session, args).await,
        Command::Delete(args) => delete::run(&session, args).await,
        Command::Rollout(args) => rollout::run(&session, args).await,
        Command::Scale(args) => scale::run(&session, args).await,
        Command::Top(args) => top::run(&session, args).await,
        Command::Logs(args) => logs::run(&session, args).await,
        Command::Image(args) => image::run(&session, args).await,
        Command::Exec(args) => match exec::run(&session, args).await? {
            0 => Ok(()),
            code => Err(CtlError::Exit(code)),
        },
        Command::Completion(_) | Command::ApiResources(_) | Command::Dataplane(_) => Ok(()),
    }
}
