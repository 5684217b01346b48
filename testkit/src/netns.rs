//! A small network of Linux network namespaces for fault tests with real processes: one
//! namespace per host a test names (a hub node, the agents and their simulator), each joined by
//! a veth pair to a bridge in a central namespace, all in one `10.S.0.0/24` subnet; the test's
//! own process reaches every host through one more veth pair (address `10.S.0.1`), an observer
//! link no fault touches. Servers bind their namespace's address, so a run's traffic stays in
//! its namespaces, and fixed ports never collide with another run.
//!
//! Faults are `iptables` rules inside the sending host's namespace (nftables backend): a
//! partition, one way or both, drops what one host sends to another; loss drops a random share
//! of what a host sends to the others. Latency cannot be injected on every kernel: the
//! `netem` qdisc is a module some kernels lack, so tests stall a process (SIGSTOP) instead.
//!
//! Names carry the test process's id, so parallel runs do not collide; everything is deleted
//! when the [`Network`] is dropped (also while a test panics), and namespaces left by a run that
//! was killed outright are deleted by the next [`Network::new`]. Needs root, `ip` and
//! `iptables`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, bail};
use flotilla_consensus::transport::net::Security;
use flotilla_hub::node::GroupClient;

/// Every namespace a [`Network`] makes starts with this.
const PREFIX: &str = "flotilla-net-";

/// Networks made by this process so far, to tell them apart.
static NETWORKS: AtomicU32 = AtomicU32::new(0);

/// One host of the network.
#[derive(Debug, Clone)]
pub struct Host {
    /// Its network namespace.
    pub namespace: String,
    /// Its address.
    pub address: Ipv4Addr,
}

/// A network of namespaces, deleted when dropped.
#[derive(Debug)]
pub struct Network {
    central: String,
    hosts: BTreeMap<String, Host>,
    observer: String,
    subnet: u8,
}

impl Network {
    /// Makes a namespace for each of `hosts` (short names: `hub1`, `agents`), bridged together
    /// and reachable from the calling process.
    pub fn new(hosts: &[&str]) -> anyhow::Result<Network> {
        delete_abandoned();
        let pid = std::process::id();
        let serial = NETWORKS.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{pid}-{serial}");
        // Interface names have at most 15 bytes; namespaces keep the readable name.
        let short = format!("f{pid}{}", serial % 10);
        let subnet = free_subnet(pid)?;
        let mut network = Network {
            central: format!("{PREFIX}{tag}-central"),
            hosts: BTreeMap::new(),
            observer: format!("{short}o"),
            subnet,
        };
        network.build(hosts, &tag, &short)?;
        Ok(network)
    }

    fn build(&mut self, hosts: &[&str], tag: &str, short: &str) -> anyhow::Result<()> {
        let central = self.central.clone();
        ip(&["netns", "add", &central])?;
        in_namespace(&central, &["ip", "link", "set", "lo", "up"])?;
        in_namespace(&central, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_namespace(&central, &["ip", "link", "set", "br0", "up"])?;
        // The observer link: the calling process's namespace on one end.
        let (outer, inner) = (self.observer.clone(), format!("{short}p"));
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &central])?;
        self.attach(&inner)?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.address_of(1)),
            "dev",
            &outer,
        ])?;
        ip(&["link", "set", &outer, "up"])?;
        for (index, name) in hosts.iter().enumerate() {
            let namespace = format!("{PREFIX}{tag}-{name}");
            let address = self.address_of(10 + index as u8);
            let (there, bridged) = (format!("{short}h{index}"), format!("{short}b{index}"));
            ip(&["netns", "add", &namespace])?;
            // Known before anything else can fail, so that a drop deletes it.
            self.hosts.insert(
                (*name).to_owned(),
                Host {
                    namespace: namespace.clone(),
                    address,
                },
            );
            in_namespace(&namespace, &["ip", "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", &there, "type", "veth", "peer", "name", &bridged,
            ])?;
            ip(&["link", "set", &there, "netns", &namespace])?;
            ip(&["link", "set", &bridged, "netns", &central])?;
            self.attach(&bridged)?;
            in_namespace(
                &namespace,
                &["ip", "addr", "add", &format!("{address}/24"), "dev", &there],
            )?;
            in_namespace(&namespace, &["ip", "link", "set", &there, "up"])?;
        }
        Ok(())
    }

    /// Puts an interface moved into the central namespace on its bridge.
    fn attach(&self, interface: &str) -> anyhow::Result<()> {
        in_namespace(
            &self.central,
            &["ip", "link", "set", interface, "master", "br0"],
        )?;
        in_namespace(&self.central, &["ip", "link", "set", interface, "up"])
    }

    fn address_of(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, 0, last)
    }

    /// Host `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&Host> {
        self.hosts
            .get(name)
            .with_context(|| format!("no host {name} in the network"))
    }

    /// Host `name`'s address.
    pub fn address(&self, name: &str) -> anyhow::Result<Ipv4Addr> {
        Ok(self.host(name)?.address)
    }

    /// The calling process's address on the network.
    pub fn observer_address(&self) -> Ipv4Addr {
        self.address_of(1)
    }

    /// `program` to run inside host `name`'s namespace (`ip netns exec`, which execs it: the
    /// child's pid is the program's, for signals).
    pub fn command(&self, name: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let namespace = self.hosts.get(name).map_or_else(
            || format!("{PREFIX}unknown-host-{name}"),
            |h| h.namespace.clone(),
        );
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &namespace]).arg(program);
        command
    }

    /// Drops everything `from` sends to `to`, and nothing the other way.
    pub fn cut_one_way(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let to = self.address(to)?.to_string();
        self.iptables(from, &["-A", "OUTPUT", "-d", &to, "-j", "DROP"])
    }

    /// Drops everything between `a` and `b`, both ways.
    pub fn partition(&self, a: &str, b: &str) -> anyhow::Result<()> {
        self.cut_one_way(a, b)?;
        self.cut_one_way(b, a)
    }

    /// Drops a random `probability` share of what `name` sends to every other host (not to the
    /// observer).
    pub fn lose(&self, name: &str, probability: f64) -> anyhow::Result<()> {
        let probability = format!("{probability:.3}");
        for (other, host) in &self.hosts {
            if other == name {
                continue;
            }
            let to = host.address.to_string();
            self.iptables(
                name,
                &[
                    "-A",
                    "OUTPUT",
                    "-d",
                    &to,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    &probability,
                    "-j",
                    "DROP",
                ],
            )?;
        }
        Ok(())
    }

    /// Removes every fault.
    pub fn heal(&self) -> anyhow::Result<()> {
        for name in self.hosts.keys() {
            self.iptables(name, &["-F", "OUTPUT"])?;
        }
        Ok(())
    }

    /// Packets the fault rules of host `name` have dropped so far.
    pub fn dropped(&self, name: &str) -> anyhow::Result<u64> {
        let namespace = &self.host(name)?.namespace;
        let output = Command::new("ip")
            .args(["netns", "exec", namespace, "iptables", "-L", "OUTPUT"])
            .args(["-v", "-n", "-x"])
            .output()
            .context("running iptables -L")?;
        if !output.status.success() {
            bail!("iptables -L: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| line.contains("DROP"))
            .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    /// Whether a TCP connection from host `from` to `to`'s `port` opens within a second.
    pub fn connects(&self, from: &str, to: &str, port: u16) -> anyhow::Result<bool> {
        let to = self.address(to)?;
        let status = self
            .command(from, "timeout")
            .args(["1", "bash", "-c", &format!("exec 3<>/dev/tcp/{to}/{port}")])
            .status()
            .context("running a connection probe")?;
        Ok(status.success())
    }

    fn iptables(&self, name: &str, rule: &[&str]) -> anyhow::Result<()> {
        let namespace = self.host(name)?.namespace.clone();
        let mut args = vec!["iptables", "-w"];
        args.extend_from_slice(rule);
        in_namespace(&namespace, &args)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its interfaces and, with them, their veth peers.
        for host in self.hosts.values() {
            let _ = ip(&["netns", "delete", &host.namespace]);
        }
        let _ = ip(&["netns", "delete", &self.central]);
        let _ = ip(&["link", "delete", &self.observer]);
    }
}

/// The operator of a hub group whose nodes listen on the network: whoever holds the group CA
/// reaches the peer listeners as node 0, as [`crate::hub_group::HubGroup`] does on loopback.
pub struct GroupOperator {
    security: Security,
}

impl GroupOperator {
    /// An operator certificate from the CA in `ca_cert` and `ca_key`, named `host`.
    pub fn new(ca_cert: &Path, ca_key: &Path, host: Ipv4Addr) -> anyhow::Result<GroupOperator> {
        let ca = flotilla_pki::GroupCa::from_files(ca_cert, ca_key)?;
        Ok(GroupOperator {
            security: Security::operator(ca, &host.to_string())?,
        })
    }

    /// A client of the node whose peer listener is `peer`; connects on first use.
    pub fn client(&self, peer: &str) -> anyhow::Result<GroupClient> {
        Ok(GroupClient::with_security(peer, &self.security)?)
    }
}

/// Whether this process can make namespaces and rules: root, `ip` and `iptables`.
pub fn missing_requirements() -> Vec<String> {
    let mut missing = Vec::new();
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        missing.push("root (network namespaces and iptables)".to_owned());
    }
    for tool in ["ip", "iptables", "timeout", "bash"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            missing.push(format!("the `{tool}` command"));
        }
    }
    missing
}

/// A `10.S.0.0/24` no route of this machine uses, starting from one derived from `pid`.
fn free_subnet(pid: u32) -> anyhow::Result<u8> {
    let output = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .context("running ip addr")?;
    let used = String::from_utf8_lossy(&output.stdout).into_owned();
    let routes = Command::new("ip")
        .args(["-4", "route", "show"])
        .output()
        .context("running ip route")?;
    let used = used + &String::from_utf8_lossy(&routes.stdout);
    (0..200u32)
        .map(|i| (20 + (pid % 200 + i) % 200) as u8)
        .find(|s| !used.contains(&format!(" 10.{s}.0.")) && !used.contains(&format!("10.{s}.0.0/")))
        .context("no free 10.S.0.0/24 subnet")
}

/// Deletes the namespaces of runs whose process is gone (killed before its drop ran).
fn delete_abandoned() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some(namespace) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = namespace
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "delete", namespace]);
        }
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args))
}

fn in_namespace(namespace: &str, args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip")
        .args(["netns", "exec", namespace])
        .args(args))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
