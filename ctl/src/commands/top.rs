//! `top`: CPU and memory use of nodes and pods from the metrics.k8s.io API, as kubectl top
//! prints it: `skiffctl top nodes [NAME] [-l SEL] [--sort-by cpu|memory]` (with the share
//! of each node's allocatable) and `skiffctl top pods [NAME] [-n NS | -A] [-l SEL]
//! [--containers] [--sort-by cpu|memory]`. CPU shows in millicores (`250m`), memory in
//! MiB (`64Mi`).

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use skiff_api::{client::ListParams, metrics_api::MetricsResource, validation::quantity::Quantity};

use crate::{
    error::CtlError,
    printers::{self, Table},
    session::Session,
};

/// `skiffctl top`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  skiffctl top nodes\n  skiffctl top pods -A --sort-by cpu\n  skiffctl top pods web --containers"
)]
pub struct TopArgs {
    #[command(subcommand)]
    pub what: TopCommand,
}

/// What to show the use of.
#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// CPU and memory use of nodes, and their share of each node's allocatable
    #[command(visible_alias = "node", alias = "no")]
    Nodes(TopNodesArgs),
    /// CPU and memory use of pods (or of their containers)
    #[command(visible_alias = "pod", alias = "po")]
    Pods(TopPodsArgs),
}

/// What to sort rows by (highest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortBy {
    Cpu,
    Memory,
}

/// `skiffctl top nodes`.
#[derive(Args, Debug)]
pub struct TopNodesArgs {
    /// One node only
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Only nodes whose labels match this selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// Sort by CPU or memory use, highest first [default: by name]
    #[arg(long, value_name = "FIELD")]
    pub sort_by: Option<SortBy>,
    /// Print the table without the header line
    #[arg(long)]
    pub no_headers: bool,
}

/// `skiffctl top pods`.
#[derive(Args, Debug)]
pub struct TopPodsArgs {
    /// One pod only
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Pods of every namespace; adds a NAMESPACE column
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only pods whose labels match this selector
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    pub selector: Option<String>,
    /// A line per container
    #[arg(long)]
    pub containers: bool,
    /// Sort by CPU or memory use, highest first [default: by namespace and name]
    #[arg(long, value_name = "FIELD")]
    pub sort_by: Option<SortBy>,
    /// Print the table without the header line
    #[arg(long)]
    pub no_headers: bool,
}

/// CPU (in nanocores) and memory (in bytes) of one usage object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_nanos: i128,
    pub memory_bytes: i64,
}

impl Usage {
    /// The `usage` map of a metrics object (`{"cpu": "123n", "memory": "4Ki"}`).
    ///
    /// # Errors
    /// A quantity that does not parse, named by where it is.
    pub fn parse(usage: &Value, at: &str) -> Result<Self, CtlError> {
        let quantity = |key: &str| -> Result<Quantity, CtlError> {
            let text = usage[key].as_str().unwrap_or("0");
            Quantity::parse(text).map_err(|e| {
                CtlError::usage(format!("{at}.usage.{key}: {text:?} is not a quantity: {e}"))
            })
        };
        Ok(Self {
            cpu_nanos: quantity("cpu")?.nanos(),
            memory_bytes: quantity("memory")?.value(),
        })
    }

    fn add(self, other: Usage) -> Usage {
        Usage {
            cpu_nanos: self.cpu_nanos + other.cpu_nanos,
            memory_bytes: self.memory_bytes + other.memory_bytes,
        }
    }

    fn sort_key(self, by: SortBy) -> i128 {
        match by {
            SortBy::Cpu => self.cpu_nanos,
            SortBy::Memory => i128::from(self.memory_bytes),
        }
    }
}

/// Millicores as kubectl top prints them (rounded up): `250m`.
pub fn cpu_cell(cpu_nanos: i128) -> String {
    let millis = cpu_nanos.div_euclid(1_000_000) + i128::from(cpu_nanos.rem_euclid(1_000_000) != 0);
    format!("{millis}m")
}

/// MiB as kubectl top prints them (rounded down): `64Mi`.
pub fn memory_cell(bytes: i64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

/// `used` as a whole percentage of `total` (kubectl's integer division); `<unknown>`
/// without a total.
pub fn percent_cell(used: i128, total: Option<i128>) -> String {
    match total {
        Some(total) if total > 0 => format!("{}%", used * 100 / total),
        _ => "<unknown>".into(),
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or("")
}

/// A node's allocatable CPU (nanocores) and memory (bytes), else its capacity.
fn allocatable(node: &Value) -> (Option<i128>, Option<i128>) {
    let get = |key: &str| {
        ["allocatable", "capacity"].iter().find_map(|field| {
            let text = node["status"][field][key].as_str()?;
            Quantity::parse(text).ok()
        })
    };
    (
        get("cpu").map(|q| q.nanos()),
        get("memory").map(|q| i128::from(q.value())),
    )
}

/// One row of `top nodes`: the node, and its usage when it reported any.
pub fn node_row(name: &str, usage: Option<Usage>, node: Option<&Value>) -> Vec<String> {
    let Some(usage) = usage else {
        return [name, "<unknown>", "<unknown>", "<unknown>", "<unknown>"]
            .map(str::to_string)
            .to_vec();
    };
    let (cpu, memory) = node.map(allocatable).unwrap_or_default();
    vec![
        name.to_string(),
        cpu_cell(usage.cpu_nanos),
        percent_cell(usage.cpu_nanos, cpu),
        memory_cell(usage.memory_bytes),
        percent_cell(i128::from(usage.memory_bytes), memory),
    ]
}

fn params(selector: Option<&String>) -> ListParams {
    ListParams {
        label_selector: selector.cloned().unwrap_or_default(),
        ..ListParams::default()
    }
}

/// Runs `top`.
///
/// # Errors
/// The server's, or "metrics not available yet" when nothing has been sampled.
pub async fn run(session: &Session, args: &TopArgs) -> Result<(), CtlError> {
    let text = match &args.what {
        TopCommand::Nodes(args) => nodes(session, args).await?,
        TopCommand::Pods(args) => match pods(session, args).await? {
            Some(text) => text,
            None => return Ok(()),
        },
    };
    printers::write_stdout(&text);
    Ok(())
}

async fn nodes(session: &Session, args: &TopNodesArgs) -> Result<String, CtlError> {
    let client = session.client();
    let resource = MetricsResource::Nodes.group_resource();
    let (metrics, nodes) = match &args.name {
        Some(name) => (
            vec![
                client
                    .get(&resource, "", name)
                    .await
                    .map_err(|e| session.fail(e))?,
            ],
            vec![
                client
                    .get("nodes", "", name)
                    .await
                    .map_err(|e| session.fail(e))?,
            ],
        ),
        None => {
            let selector = params(args.selector.as_ref());
            let metrics = client
                .list(&resource, "", &selector)
                .await
                .map_err(|e| session.fail(e))?
                .items;
            let nodes = client
                .list("nodes", "", &selector)
                .await
                .map_err(|e| session.fail(e))?
                .items;
            (metrics, nodes)
        }
    };
    if metrics.is_empty() {
        return Err(CtlError::usage("metrics not available yet"));
    }
    let mut rows = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let usage = metrics
            .iter()
            .find(|m| name_of(m) == name_of(node))
            .map(|m| Usage::parse(&m["usage"], &format!("items[{i}]")))
            .transpose()?;
        rows.push((name_of(node).to_string(), usage, node));
    }
    rows.sort_by(|a, b| match args.sort_by {
        Some(by) => {
            let key = |u: &Option<Usage>| u.map(|u| u.sort_key(by));
            key(&b.1).cmp(&key(&a.1)).then(a.0.cmp(&b.0))
        }
        None => a.0.cmp(&b.0),
    });
    let mut table = Table::new(["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]);
    for (name, usage, node) in rows {
        table.push(node_row(&name, usage, Some(node)));
    }
    Ok(table.render(args.no_headers))
}

/// One pod's (or container's) line before formatting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLine {
    pub namespace: String,
    pub pod: String,
    /// Empty for a pod's total.
    pub container: String,
    pub usage: Usage,
}

/// The lines of PodMetrics objects: one per pod (its containers summed) or one per
/// container.
///
/// # Errors
/// A usage that does not parse.
pub fn pod_lines(metrics: &[Value], containers: bool) -> Result<Vec<PodLine>, CtlError> {
    let mut lines = Vec::new();
    for (i, pod) in metrics.iter().enumerate() {
        let mut total = Usage::default();
        for (j, container) in pod["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let usage = Usage::parse(&container["usage"], &format!("items[{i}].containers[{j}]"))?;
            total = total.add(usage);
            if containers {
                lines.push(PodLine {
                    namespace: namespace_of(pod).to_string(),
                    pod: name_of(pod).to_string(),
                    container: container["name"].as_str().unwrap_or("").to_string(),
                    usage,
                });
            }
        }
        if !containers {
            lines.push(PodLine {
                namespace: namespace_of(pod).to_string(),
                pod: name_of(pod).to_string(),
                container: String::new(),
                usage: total,
            });
        }
    }
    Ok(lines)
}

/// The `top pods` table of `lines`.
pub fn pods_table(
    mut lines: Vec<PodLine>,
    with_namespace: bool,
    containers: bool,
    sort_by: Option<SortBy>,
) -> Table {
    lines.sort_by(|a, b| {
        let by_name =
            (&a.namespace, &a.pod, &a.container).cmp(&(&b.namespace, &b.pod, &b.container));
        match sort_by {
            Some(by) => b
                .usage
                .sort_key(by)
                .cmp(&a.usage.sort_key(by))
                .then(by_name),
            None => by_name,
        }
    });
    let mut headers = Vec::new();
    if with_namespace {
        headers.push("NAMESPACE");
    }
    if containers {
        headers.push("POD");
    }
    headers.extend(["NAME", "CPU(cores)", "MEMORY(bytes)"]);
    let mut table = Table::new(headers);
    for line in lines {
        let mut row = Vec::new();
        if with_namespace {
            row.push(line.namespace);
        }
        row.push(line.pod);
        if containers {
            row.push(line.container);
        }
        row.push(cpu_cell(line.usage.cpu_nanos));
        row.push(memory_cell(line.usage.memory_bytes));
        table.push(row);
    }
    table
}

/// The table, or `None` when there is nothing to show (said on stderr, like kubectl).
async fn pods(session: &Session, args: &TopPodsArgs) -> Result<Option<String>, CtlError> {
    let client = session.client();
    let resource = MetricsResource::Pods.group_resource();
    let namespace = if args.all_namespaces {
        ""
    } else {
        session.namespace()
    };
    let metrics = match &args.name {
        Some(name) => vec![
            client
                .get(&resource, session.namespace(), name)
                .await
                .map_err(|e| session.fail(e))?,
        ],
        None => {
            client
                .list(&resource, namespace, &params(args.selector.as_ref()))
                .await
                .map_err(|e| session.fail(e))?
                .items
        }
    };
    if metrics.is_empty() {
        // Pods without metrics are newly started ones: their first window is not over.
        let pods = client
            .list("pods", namespace, &params(args.selector.as_ref()))
            .await
            .map_err(|e| session.fail(e))?;
        if !pods.items.is_empty() {
            return Err(CtlError::usage("metrics not available yet"));
        }
        if args.all_namespaces {
            eprintln!("No resources found");
        } else {
            eprintln!("No resources found in {namespace} namespace.");
        }
        return Ok(None);
    }
    let lines = pod_lines(&metrics, args.containers)?;
    Ok(Some(
        pods_table(lines, args.all_namespaces, args.containers, args.sort_by)
            .render(args.no_headers),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cells_read_like_kubectl_top() {
        assert_eq!(cpu_cell(250_000_000), "250m");
        assert_eq!(cpu_cell(123_456_789), "124m", "rounded up, as MilliValue");
        assert_eq!(cpu_cell(0), "0m");
        assert_eq!(memory_cell(64 << 20), "64Mi");
        assert_eq!(memory_cell((64 << 20) + 1000), "64Mi");
        assert_eq!(percent_cell(500_000_000, Some(2_000_000_000)), "25%");
        assert_eq!(percent_cell(1, None), "<unknown>");
    }

    #[test]
    fn a_node_row_is_a_share_of_its_allocatable() {
        let node = json!({"status": {
            "capacity": {"cpu": "4", "memory": "8Gi"},
            "allocatable": {"cpu": "2", "memory": "1Gi"},
        }});
        let usage = Usage::parse(&json!({"cpu": "500m", "memory": "262144Ki"}), "x").unwrap();
        assert_eq!(
            node_row("n1", Some(usage), Some(&node)),
            ["n1", "500m", "25%", "256Mi", "25%"]
        );
        assert_eq!(node_row("n2", None, Some(&node))[1], "<unknown>");
        let bare = json!({"status": {"capacity": {"cpu": "1000m"}}});
        assert_eq!(
            node_row("n3", Some(usage), Some(&bare))[2..],
            ["50%", "256Mi", "<unknown>"]
        );
    }

    #[test]
    fn pods_sum_their_containers_or_list_each_sorted_as_asked() {
        let metrics = vec![
            json!({"metadata": {"name": "idle", "namespace": "a"}, "containers": [
                {"name": "sleep", "usage": {"cpu": "0", "memory": "1Mi"}},
            ]}),
            json!({"metadata": {"name": "busy", "namespace": "b"}, "containers": [
                {"name": "spin", "usage": {"cpu": "990123456n", "memory": "2Mi"}},
                {"name": "side", "usage": {"cpu": "10m", "memory": "3Mi"}},
            ]}),
        ];
        let text = pods_table(
            pod_lines(&metrics, false).unwrap(),
            true,
            false,
            Some(SortBy::Cpu),
        )
        .render(false);
        assert_eq!(
            text,
            "NAMESPACE   NAME   CPU(cores)   MEMORY(bytes)\n\
             b           busy   1001m        5Mi\n\
             a           idle   0m           1Mi\n"
        );
        let text = pods_table(pod_lines(&metrics, true).unwrap(), false, true, None).render(true);
        assert_eq!(
            text,
            "idle   sleep   0m     1Mi\nbusy   side    10m    3Mi\nbusy   spin    991m   2Mi\n"
        );
        let bad = vec![json!({"metadata": {"name": "p"}, "containers": [
            {"name": "c", "usage": {"cpu": "lots"}},
        ]})];
        let error = pod_lines(&bad, false).unwrap_err().to_string();
        assert!(
            error.contains("items[0].containers[0].usage.cpu"),
            "{error}"
        );
    }
}
