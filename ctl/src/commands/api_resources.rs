//! `api-resources`: the resource types the server serves, with their short names, API
//! version, scope and kind, from the registry the server uses.

use clap::Args;
use skiff_api::resources::RESOURCES;

use crate::printers::{self, Table};

/// `skiffctl api-resources`.
#[derive(Args, Debug)]
pub struct ApiResourcesArgs {
    /// Only namespaced types (true) or only cluster-wide ones (false)
    #[arg(long, value_name = "BOOL")]
    pub namespaced: Option<bool>,
    /// Print only the names (`deployments.apps`)
    #[arg(short = 'o', long, value_name = "FORMAT", value_parser = ["name", "wide"])]
    pub output: Option<String>,
    /// Print the table without the header line
    #[arg(long)]
    pub no_headers: bool,
}

/// The table (or names) of served types.
pub fn render(args: &ApiResourcesArgs) -> String {
    let served = RESOURCES
        .iter()
        .filter(|r| args.namespaced.is_none_or(|n| n == r.namespaced()));
    if args.output.as_deref() == Some("name") {
        return served
            .map(|r| format!("{}\n", r.group_resource()))
            .collect();
    }
    let mut table = Table::new(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for r in served {
        table.push(vec![
            r.plural.to_owned(),
            r.short_names.join(","),
            r.api_version.to_owned(),
            r.namespaced().to_string(),
            r.kind.to_owned(),
        ]);
    }
    table.render(args.no_headers)
}

/// Runs `api-resources`.
pub fn run(args: &ApiResourcesArgs) {
    printers::write_stdout(&render(args));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_type_is_listed_with_its_short_names() {
        let args = ApiResourcesArgs {
            namespaced: None,
            output: None,
            no_headers: false,
        };
        let text = render(&args);
        assert!(text.starts_with("NAME "));
        let deployments = text.lines().find(|l| l.starts_with("deployments")).unwrap();
        let cells: Vec<_> = deployments.split_whitespace().collect();
        assert_eq!(
            cells,
            ["deployments", "deploy", "apps/v1", "true", "Deployment"]
        );
    }

    #[test]
    fn names_can_be_filtered_by_scope() {
        let args = ApiResourcesArgs {
            namespaced: Some(false),
            output: Some("name".into()),
            no_headers: false,
        };
        let text = render(&args);
        assert!(text.contains("nodes\n"));
        assert!(!text.contains("pods\n"));
    }
}
