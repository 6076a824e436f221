//! `api-resources`: the resource types the server serves, with their short names, API
//! version, scope and kind, from the registry the server uses, and the metrics.k8s.io
//! resources it serves live.

use clap::Args;
use skiff_api::{
    metrics_api::{self, MetricsResource},
    resources::RESOURCES,
};

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
    let stored = RESOURCES.iter().map(|r| {
        (
            r.group_resource(),
            [
                r.plural.to_owned(),
                r.short_names.join(","),
                r.api_version.to_owned(),
                r.namespaced().to_string(),
                r.kind.to_owned(),
            ],
        )
    });
    let metrics = MetricsResource::ALL.into_iter().map(|r| {
        (
            r.group_resource(),
            [
                r.plural().to_owned(),
                String::new(),
                metrics_api::API_VERSION.to_owned(),
                r.namespaced().to_string(),
                r.kind().to_owned(),
            ],
        )
    });
    let served = stored
        .chain(metrics)
        .filter(|(_, row)| args.namespaced.is_none_or(|n| n.to_string() == row[3]));
    if args.output.as_deref() == Some("name") {
        return served.map(|(name, _)| format!("{name}\n")).collect();
    }
    let mut table = Table::new(["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]);
    for (_, row) in served {
        table.push(row.to_vec());
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
        assert!(text.contains("nodes.metrics.k8s.io\n"));
        assert!(!text.contains("pods.metrics.k8s.io\n"));
    }
}
