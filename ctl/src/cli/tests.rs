//! The command line parses the way kubectl users type it.

use clap::{CommandFactory, Parser};

use super::*;
use crate::{commands::delete::Cascade, printers::OutputFormat};

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("skiffctl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn apply_takes_repeated_files_and_a_namespace_anywhere() {
    let cli = parse(&["apply", "-f", "a.yaml", "--filename", "dir/", "-n", "shop"]);
    let Command::Apply(args) = cli.command else {
        panic!("not apply")
    };
    assert_eq!(args.filenames, ["a.yaml", "dir/"]);
    assert_eq!(cli.connection.namespace.as_deref(), Some("shop"));
}

#[test]
fn apply_without_a_file_is_refused() {
    assert!(Cli::try_parse_from(["skiffctl", "apply"]).is_err());
}

#[test]
fn get_takes_types_names_and_kubectl_flags() {
    let cli = parse(&[
        "get",
        "deploy,svc",
        "web",
        "-o",
        "wide",
        "-l",
        "app=web",
        "-A",
        "--show-labels",
        "--no-headers",
        "-L",
        "tier,zone",
    ]);
    let Command::Get(args) = cli.command else {
        panic!("not get")
    };
    assert_eq!(args.targets, ["deploy,svc", "web"]);
    assert_eq!(args.output, Some(OutputFormat::Wide));
    assert_eq!(args.selector.as_deref(), Some("app=web"));
    assert!(args.all_namespaces && args.show_labels && args.no_headers);
    assert_eq!(args.label_columns, ["tier", "zone"]);
}

#[test]
fn get_watch_and_output_formats_parse() {
    let cli = parse(&[
        "get",
        "pods",
        "-w",
        "-o",
        "name",
        "--field-selector",
        "spec.nodeName=n1",
    ]);
    let Command::Get(args) = cli.command else {
        panic!("not get")
    };
    assert!(args.watch);
    assert_eq!(args.output, Some(OutputFormat::Name));
    assert_eq!(args.field_selector.as_deref(), Some("spec.nodeName=n1"));
}

#[test]
fn an_unknown_output_format_is_refused_with_the_allowed_ones() {
    let error = Cli::try_parse_from(["skiffctl", "get", "pods", "-o", "xml"])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("allowed formats are: custom-columns,json,jsonpath,name,wide,yaml"),
        "{error}"
    );
}

#[test]
fn delete_takes_grace_period_cascade_and_wait() {
    let cli = parse(&[
        "delete",
        "pod",
        "a",
        "b",
        "--grace-period=0",
        "--force",
        "--cascade=orphan",
        "--wait",
    ]);
    let Command::Delete(args) = cli.command else {
        panic!("not delete")
    };
    assert_eq!(args.targets, ["pod", "a", "b"]);
    assert_eq!(args.grace_period, 0);
    assert!(args.force && args.wait);
    assert_eq!(args.cascade, Cascade::Orphan);
    let cli = parse(&["delete", "-f", "app.yaml", "--wait=false"]);
    let Command::Delete(args) = cli.command else {
        panic!("not delete")
    };
    assert!(!args.wait);
    assert_eq!(args.grace_period, -1);
    assert_eq!(args.cascade, Cascade::Background);
}

#[test]
fn create_takes_files_or_a_kind_to_build() {
    let cli = parse(&["create", "-f", "app.yaml"]);
    let Command::Create(args) = cli.command else {
        panic!("not create")
    };
    assert_eq!(args.filenames, ["app.yaml"]);
    let cli = parse(&["create", "ns", "shop"]);
    let Command::Create(args) = cli.command else {
        panic!("not create")
    };
    assert!(matches!(args.kind, Some(create::CreateKind::Namespace(_))));
    assert!(Cli::try_parse_from(["skiffctl", "create", "deployment", "web"]).is_err());
}

#[test]
fn describe_and_completion_parse() {
    let cli = parse(&["describe", "po", "web", "--show-events=false"]);
    let Command::Describe(args) = cli.command else {
        panic!("not describe")
    };
    assert_eq!(args.targets, ["po", "web"]);
    assert!(!args.show_events);
    assert!(matches!(
        parse(&["completion", "zsh"]).command,
        Command::Completion(_)
    ));
    assert!(Cli::try_parse_from(["skiffctl", "completion", "tcsh"]).is_err());
}

#[test]
fn connection_flags_are_global() {
    let cli = parse(&[
        "get",
        "pods",
        "--server",
        "https://h:1",
        "--token",
        "t",
        "--certificate-authority",
        "ca.pem",
        "--config",
        "c.yaml",
    ]);
    assert_eq!(cli.connection.server.as_deref(), Some("https://h:1"));
    assert_eq!(cli.connection.token.as_deref(), Some("t"));
    assert_eq!(
        cli.connection.certificate_authority.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
}

#[test]
fn every_flag_of_every_command_has_help() {
    fn check(command: &clap::Command, path: &str) {
        for arg in command.get_arguments() {
            if ["help", "version"].contains(&arg.get_id().as_str()) {
                continue;
            }
            assert!(
                arg.get_help().is_some(),
                "{path}: --{} has no help",
                arg.get_id()
            );
        }
        for sub in command.get_subcommands() {
            assert!(
                sub.get_about().is_some(),
                "{path} {} has no about",
                sub.get_name()
            );
            check(sub, &format!("{path} {}", sub.get_name()));
        }
    }
    let command = Cli::command();
    command.clone().debug_assert();
    check(&command, "skiffctl");
}

#[test]
fn rollout_verbs_take_a_deployment_and_kubectl_flags() {
    let cli = parse(&["rollout", "undo", "deployment/web", "--to-revision", "2"]);
    let Command::Rollout(args) = cli.command else {
        panic!("not rollout")
    };
    let rollout::RolloutCommand::Undo {
        target,
        to_revision,
    } = args.command
    else {
        panic!("not undo")
    };
    assert_eq!(target.target, ["deployment/web"]);
    assert_eq!(to_revision, 2);
    let cli = parse(&[
        "rollout",
        "status",
        "deploy",
        "web",
        "--watch=false",
        "--timeout",
        "1m",
    ]);
    let Command::Rollout(args) = cli.command else {
        panic!("not rollout")
    };
    let rollout::RolloutCommand::Status {
        target,
        watch,
        timeout,
    } = args.command
    else {
        panic!("not status")
    };
    assert_eq!(target.target, ["deploy", "web"]);
    assert!(!watch);
    assert_eq!(timeout, std::time::Duration::from_secs(60));
}

#[test]
fn scale_takes_replicas_before_or_after_the_target() {
    for argv in [
        &["scale", "--replicas=3", "deployment/web"][..],
        &["scale", "deployment/web", "--replicas", "3"][..],
    ] {
        let Command::Scale(args) = parse(argv).command else {
            panic!("not scale")
        };
        assert_eq!(args.replicas, 3);
        assert_eq!(args.targets, ["deployment/web"]);
    }
}
