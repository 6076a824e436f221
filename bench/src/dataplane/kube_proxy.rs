//! The rules kube-proxy writes for a service set, in its iptables mode (KUBE-SERVICES ->
//! KUBE-SVC-* with `statistic --mode random` -> KUBE-SEP-* DNAT) and its nftables mode
//! (service and NodePort verdict maps), generated here and loaded inside a bench netns.

use std::{
    fmt::Write as _,
    hash::{DefaultHasher, Hash, Hasher},
    io::Write as _,
    process::{Command, Stdio},
};

use anyhow::{Context, Result, bail};
use skiff_tests::netns::Netns;

use super::services::{POD_CIDR, SERVICE_PORT, Service, TARGET_PORT};

/// Which iptables binary loads the classic shape: the legacy (x_tables) one when it is
/// installed, as kube-proxy's iptables mode on most nodes, else the nft-backed one.
pub fn iptables_restore() -> &'static str {
    if which("iptables-legacy-restore") {
        "iptables-legacy-restore"
    } else {
        "iptables-restore"
    }
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// kube-proxy's chain-name hash: 16 base32 characters derived from the service port's
/// name and protocol (kube-proxy takes SHA-256; any stable hash gives the same shape).
fn chain_hash(parts: &[&str]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(16);
    for round in 0u8..2 {
        let mut hasher = DefaultHasher::new();
        round.hash(&mut hasher);
        parts.hash(&mut hasher);
        let mut bits = hasher.finish();
        for _ in 0..8 {
            out.push(char::from(ALPHABET[(bits & 31) as usize]));
            bits >>= 5;
        }
    }
    out
}

/// The whole nat table kube-proxy's iptables mode holds for `services`, in
/// `iptables-restore` format (with `--cluster-cidr` set and ExternalTrafficPolicy Cluster).
pub fn iptables_rules(services: &[Service]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    let mut nodeports = String::new();
    for svc in services {
        let name = svc.port_name();
        let svc_chain = format!("KUBE-SVC-{}", chain_hash(&[&name, "tcp"]));
        let ext_chain = format!("KUBE-EXT-{}", chain_hash(&[&name, "tcp"]));
        let cip = svc.cluster_ip;
        let _ = writeln!(chains, ":{svc_chain} - [0:0]\n:{ext_chain} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {cip}/32 -p tcp -m comment --comment \"{name} cluster IP\" \
             -m tcp --dport {SERVICE_PORT} -j {svc_chain}"
        );
        let _ = writeln!(
            nodeports,
            "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{name}\" -m tcp --dport {} -j {ext_chain}",
            svc.node_port
        );
        let _ = writeln!(
            rules,
            "-A {ext_chain} -m comment --comment \"masquerade traffic for {name} external destinations\" \
             -j KUBE-MARK-MASQ\n-A {ext_chain} -j {svc_chain}"
        );
        let _ = writeln!(
            rules,
            "-A {svc_chain} ! -s {POD_CIDR} -d {cip}/32 -p tcp -m comment --comment \"{name} cluster IP\" \
             -m tcp --dport {SERVICE_PORT} -j KUBE-MARK-MASQ"
        );
        let count = svc.endpoints.len();
        for (i, ep) in svc.endpoints.iter().enumerate() {
            let sep = format!(
                "KUBE-SEP-{}",
                chain_hash(&[&name, "tcp", &format!("{ep}:{TARGET_PORT}")])
            );
            let _ = writeln!(chains, ":{sep} - [0:0]");
            // As kube-proxy: endpoint i of n is taken with probability 1/(n-i); the last always.
            let statistic = if i + 1 < count {
                format!(
                    " -m statistic --mode random --probability {:.11}",
                    1.0 / (count - i) as f64
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                rules,
                "-A {svc_chain} -m comment --comment \"{name} -> {ep}:{TARGET_PORT}\"{statistic} -j {sep}"
            );
            let _ = writeln!(
                rules,
                "-A {sep} -s {ep}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ\n\
                 -A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {ep}:{TARGET_PORT}"
            );
        }
    }
    format!(
        "*nat\n\
         :PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         :KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-POSTROUTING - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n\
         {chains}\
         -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n\
         -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
         {rules}{nodeports}\
         -A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
         COMMIT\n"
    )
}

/// The chains and map elements of one service in kube-proxy's nftables shape.
fn nft_service(svc: &Service, chains: &mut String, elements: &mut String) {
    let name = svc.port_name();
    // kube-proxy: "service-<hash>-<namespace>/<name>/<protocol>/<port name>".
    let [namespace, rest] = [&name[..5], &name[6..name.len() - 5]];
    let suffix = format!("{namespace}/{rest}/tcp/http");
    let service = format!("service-{}-{suffix}", &chain_hash(&[&name, "tcp"])[..8]);
    let external = format!("external-{}-{suffix}", &chain_hash(&[&name, "tcp"])[..8]);
    let mut vmap = Vec::new();
    for (i, ep) in svc.endpoints.iter().enumerate() {
        let chain = format!(
            "endpoint-{}-{suffix}__{ep}/{TARGET_PORT}",
            &chain_hash(&[&name, "tcp", &ep.to_string()])[..8]
        );
        let _ = writeln!(
            chains,
            "add chain ip kube-proxy {chain}\n\
             add rule ip kube-proxy {chain} ip saddr {ep} jump mark-for-masquerade\n\
             add rule ip kube-proxy {chain} meta l4proto tcp dnat to {ep}:{TARGET_PORT}"
        );
        vmap.push(format!("{i} : goto {chain}"));
    }
    let _ = writeln!(
        chains,
        "add chain ip kube-proxy {service}\n\
         add rule ip kube-proxy {service} ip daddr {} tcp dport {SERVICE_PORT} ip saddr != {POD_CIDR} jump mark-for-masquerade\n\
         add rule ip kube-proxy {service} numgen random mod {} vmap {{ {} }}\n\
         add chain ip kube-proxy {external}\n\
         add rule ip kube-proxy {external} jump mark-for-masquerade\n\
         add rule ip kube-proxy {external} goto {service}",
        svc.cluster_ip,
        svc.endpoints.len(),
        vmap.join(", ")
    );
    let _ = writeln!(
        elements,
        "add element ip kube-proxy service-ips {{ {} . tcp . {SERVICE_PORT} : goto {service} }}\n\
         add element ip kube-proxy service-nodeports {{ tcp . {} : goto {external} }}",
        svc.cluster_ip, svc.node_port
    );
}

/// The whole `kube-proxy` table of kube-proxy's nftables mode for `services`, as one
/// `nft -f` transaction that replaces any previous table (a full resync).
pub fn nft_rules(services: &[Service]) -> String {
    let mut out = String::from(
        "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n\
         delete table ip kube-proxy\n\
         add table ip kube-proxy { comment \"rules for kube-proxy\" ; }\n\
         add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; comment \"ClusterIP, ExternalIP and LoadBalancer IP traffic\" ; }\n\
         add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment \"NodePort traffic\" ; }\n\
         add chain ip kube-proxy mark-for-masquerade\n\
         add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000\n\
         add chain ip kube-proxy masquerading\n\
         add rule ip kube-proxy masquerading mark and 0x4000 == 0 return\n\
         add rule ip kube-proxy masquerading mark set mark xor 0x4000\n\
         add rule ip kube-proxy masquerading masquerade fully-random\n\
         add chain ip kube-proxy services\n\
         add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips\n\
         add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports\n\
         add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority dstnat ; policy accept ; }\n\
         add rule ip kube-proxy nat-prerouting jump services\n\
         add chain ip kube-proxy nat-output { type nat hook output priority -100 ; policy accept ; }\n\
         add rule ip kube-proxy nat-output jump services\n\
         add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority srcnat ; policy accept ; }\n\
         add rule ip kube-proxy nat-postrouting jump masquerading\n",
    );
    out.push_str(&nft_delta(services));
    out
}

/// One transaction that adds `services` to an existing table: what kube-proxy's nftables
/// mode sends when only those services changed.
pub fn nft_delta(services: &[Service]) -> String {
    let (mut chains, mut elements) = (String::new(), String::new());
    for svc in services {
        nft_service(svc, &mut chains, &mut elements);
    }
    chains + &elements
}

/// Runs `argv` inside `ns` (through `ip netns exec`) with `input` on its stdin.
///
/// # Errors
/// When it cannot start or fails.
pub fn load_in(ns: &Netns, argv: &[&str], input: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {argv:?} in {}", ns.name()))?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())
        .with_context(|| format!("writing rules to {argv:?}"))?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "{argv:?} in {} failed: {}",
            ns.name(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::services::services;

    #[test]
    fn iptables_rules_have_one_service_rule_one_nodeport_rule_and_a_dnat_per_endpoint() {
        let text = iptables_rules(&services(3));
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(count("-A KUBE-SERVICES -d "), 3);
        assert_eq!(count("-A KUBE-NODEPORTS "), 3);
        assert_eq!(count("-j DNAT --to-destination 10.244."), 6);
        assert_eq!(count("--probability 0.50000000000"), 3);
        // The NodePort jump is the last rule of KUBE-SERVICES.
        let last = text
            .lines()
            .rfind(|l| l.starts_with("-A KUBE-SERVICES"))
            .unwrap();
        assert!(last.contains("KUBE-NODEPORTS"), "{last}");
        // Every chain jumped to is declared.
        for target in text.split(" -j ").skip(1) {
            let chain = target.split_whitespace().next().unwrap();
            if chain.starts_with("KUBE-") {
                assert!(text.contains(&format!(":{chain} ")), "{chain} declared");
            }
        }
    }

    #[test]
    fn nft_rules_map_every_service_and_nodeport_to_a_chain_defined_before_it() {
        let text = nft_rules(&services(2));
        let elements: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("add element"))
            .collect();
        assert_eq!(elements.len(), 4);
        for line in text.lines() {
            for target in line.split("goto ").skip(1) {
                let chain = target
                    .trim_end_matches([' ', '}'])
                    .split([' ', ','])
                    .next()
                    .unwrap();
                let defined = text
                    .find(&format!("add chain ip kube-proxy {chain}\n"))
                    .unwrap();
                assert!(
                    defined < text.find(line).unwrap(),
                    "{chain} defined before use"
                );
            }
        }
        assert_eq!(
            nft_delta(&services(2)[1..])
                .lines()
                .filter(|l| l.starts_with("add element"))
                .count(),
            2
        );
    }

    #[test]
    fn chain_hashes_are_stable_and_distinct() {
        assert_eq!(chain_hash(&["a", "tcp"]), chain_hash(&["a", "tcp"]));
        assert_ne!(chain_hash(&["a", "tcp"]), chain_hash(&["b", "tcp"]));
        assert_eq!(chain_hash(&["a"]).len(), 16);
    }
}
