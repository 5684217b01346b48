//! The nemesis's processes in their namespaces: the hub group (TLS, a group CA) and the fleet
//! (the simulator and an agent per cluster).

use super::*;

/// The group: a node per namespace, listening on its namespace's address.
pub(super) struct Hubs {
    pub(super) dir: TempDir,
    pub(super) operator: GroupOperator,
    pub(super) peers: BTreeMap<u64, String>,
    pub(super) apis: BTreeMap<u64, String>,
    pub(super) repo: String,
    pub(super) processes: BTreeMap<u64, Process>,
    /// Each node's `--compact-after`: at first none compacts, so every log replays whole.
    pub(super) compact_after: BTreeMap<u64, u64>,
    /// The first admin token, once read.
    pub(super) token: String,
}

impl Hubs {
    pub(super) fn start(net: &Network, repo: &str) -> Result<Hubs> {
        let dir = tempfile::tempdir()?;
        let bin = binaries::HUB.path()?;
        let output = std::process::Command::new(&bin)
            .args(["ca", "create", "--out"])
            .arg(dir.path().join("ca"))
            .output()?;
        ensure!(
            output.status.success(),
            "flotilla-hub ca create: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let operator = GroupOperator::new(
            &dir.path().join("ca/ca.crt"),
            &dir.path().join("ca/ca.key"),
            net.observer_address(),
        )?;
        std::fs::write(dir.path().join("clusters.yaml"), inventory())?;
        let mut hubs = Hubs {
            operator,
            dir,
            peers: BTreeMap::new(),
            apis: BTreeMap::new(),
            repo: repo.to_owned(),
            processes: BTreeMap::new(),
            compact_after: (1..=HUBS).map(|id| (id, 1_000_000)).collect(),
            token: String::new(),
        };
        for id in 1..=HUBS {
            let address = net.address(&hub(id))?;
            hubs.peers.insert(id, format!("{address}:{PEER_PORT}"));
            hubs.apis.insert(id, format!("{address}:{API_PORT}"));
            std::fs::write(hubs.clock_file(id), "+0")?;
        }
        for id in 1..=HUBS {
            hubs.spawn(net, id)?;
        }
        Ok(hubs)
    }

    /// Starts node `id` in its namespace (again, after a kill), its wall clock read through
    /// libfaketime from its clock file.
    pub(super) fn spawn(&mut self, net: &Network, id: u64) -> Result<()> {
        let peers: Vec<String> = self.peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
        let address = net.address(&hub(id))?;
        let ca = self.dir.path().join("ca");
        let mut command = net.command(&hub(id), binaries::HUB.path()?);
        command
            .args(["--id", &id.to_string()])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .args(["--listen", &self.peers[&id], "--peers", &peers.join(",")])
            .args(["--api-listen", &self.apis[&id]])
            .args(["--http-listen", &format!("{address}:7080")])
            .args(["--tick-ms", "50", "--election-ticks", "10"])
            .args(["--repo", &self.repo, "--poll-interval", "200ms"])
            .arg("--clusters")
            .arg(self.dir.path().join("clusters.yaml"))
            .args(["--compact-after", &self.compact_after[&id].to_string()])
            .arg("--ca-cert")
            .arg(ca.join("ca.crt"))
            .arg("--ca-key")
            .arg(ca.join("ca.key"))
            // Snapshot uploads show, for the kill mid-snapshot.
            .env("RUST_LOG", "warn,flotilla_consensus::transport=info")
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", self.clock_file(id))
            .env("FAKETIME_NO_CACHE", "1")
            .env("DONT_FAKE_MONOTONIC", "1");
        self.processes
            .insert(id, Process::spawn(format!("flotilla-hub {id}"), command)?);
        Ok(())
    }

    pub(super) fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}"))
    }

    pub(super) fn clock_file(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("clock-{id}"))
    }

    pub(super) fn kill(&mut self, id: u64) {
        if let Some(mut process) = self.processes.remove(&id) {
            process.kill();
        }
    }

    pub(super) fn stop_all(&mut self) {
        for id in 1..=HUBS {
            self.kill(id);
        }
    }

    pub(super) fn signal(&self, id: u64, signal: &str) -> Result<()> {
        let process = self.processes.get(&id).context("not running")?;
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(process.pid().to_string())
            .status()?;
        ensure!(status.success(), "kill -{signal} hub{id} failed");
        Ok(())
    }

    /// The process's state letter in /proc (`T` when stopped).
    pub(super) fn process_state(&self, id: u64) -> Result<char> {
        let pid = self.processes.get(&id).context("not running")?.pid();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        stat.rsplit(") ")
            .next()
            .and_then(|rest| rest.chars().next())
            .context("no state in /proc/PID/stat")
    }

    /// Every node running and going on: continued, restarted if killed.
    pub(super) fn resume_all(&mut self, net: &Network) -> Result<()> {
        for id in 1..=HUBS {
            match self.processes.contains_key(&id) {
                true => self.signal(id, "CONT")?,
                false => self.spawn(net, id)?,
            }
        }
        Ok(())
    }

    pub(super) fn client(&self, id: u64) -> Result<GroupClient> {
        self.operator.client(&self.peers[&id])
    }

    /// Node `id`'s raft status, through the observer link no fault cuts.
    pub(super) async fn status(&self, id: u64) -> Result<GroupStatus> {
        let status = tokio::time::timeout(CALL_TIMEOUT, self.client(id)?.status())
            .await
            .with_context(|| {
                format!("hub{id} did not answer its status within {CALL_TIMEOUT:?}")
            })??;
        Ok(status)
    }

    /// Waits until node `id` has applied everything the others had committed when it began.
    pub(super) async fn wait_caught_up(&self, id: u64) -> Result<()> {
        let mut target = 0;
        for other in self.processes.keys().filter(|o| **o != id) {
            if let Ok(status) = self.status(*other).await {
                target = target.max(status.commit);
            }
        }
        wait::until(
            &format!("hub{id} applied through {target}"),
            Duration::from_secs(30),
            || async {
                let applied = self.status(id).await.map_or(0, |s| s.applied);
                Ok(match applied >= target {
                    true => Probe::Done(()),
                    false => Probe::NotYet(format!("applied {applied}")),
                })
            },
        )
        .await
    }

    /// The leader every running node agrees on.
    pub(super) async fn leader(&self, within: Duration) -> Result<u64> {
        wait::until("an agreed leader", within, || async {
            let mut seen = BTreeSet::new();
            for id in self.processes.keys() {
                seen.insert(self.client(*id)?.status().await?.leader);
            }
            Ok(match seen.first() {
                Some(leader) if seen.len() == 1 && self.processes.contains_key(leader) => {
                    Probe::Done(*leader)
                }
                _ => Probe::NotYet(format!("leaders seen: {seen:?}")),
            })
        })
        .await
    }

    pub(super) async fn propose(&self, command: &Command) -> Result<()> {
        wait::until("a proposal accepted", Duration::from_secs(30), || async {
            let leader = self.leader(Duration::from_secs(20)).await?;
            self.client(leader)?.propose(command).await?;
            Ok(Probe::Done(()))
        })
        .await
    }

    /// Polls the running nodes until one's state satisfies `check`.
    pub(super) async fn wait_state(
        &self,
        what: &str,
        check: impl Fn(&State) -> bool,
    ) -> Result<()> {
        wait::until(what, Duration::from_secs(30), || async {
            for id in self.processes.keys() {
                if let Ok((_, state)) = self.client(*id)?.read_state(false).await
                    && check(&state)
                {
                    return Ok(Probe::Done(()));
                }
            }
            Ok(Probe::NotYet(String::new()))
        })
        .await
    }

    /// How far ahead of this machine's clock token `name` was stamped, as node `id` holds it.
    pub(super) async fn created_skew(&self, id: u64, name: &str) -> Result<Option<f64>> {
        let (_, state) = self.client(id)?.read_state(false).await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as f64;
        Ok(state
            .access
            .tokens
            .values()
            .find(|t| t.name == name)
            .map(|t| (t.created_at.0 as f64 - now) / 1000.0))
    }

    /// Applied index of every node that answers.
    pub(super) async fn applied(&self) -> BTreeMap<u64, u64> {
        let mut applied = BTreeMap::new();
        for id in 1..=HUBS {
            if let Ok(mut client) = self.client(id)
                && let Ok((index, _)) = client.read_state(false).await
            {
                applied.insert(id, index);
            }
        }
        applied
    }

    /// Waits until every node has applied the same index to the same state; returns them.
    pub(super) async fn converge(&self) -> Result<(u64, State)> {
        wait::until(
            "every hub at the same state",
            Duration::from_secs(60),
            || async {
                let mut seen = BTreeMap::new();
                let mut last = None;
                for id in 1..=HUBS {
                    let (index, state) = self.client(id)?.read_state(false).await?;
                    seen.insert(id, (index, state.hash()?));
                    last = Some((index, state));
                }
                let distinct: BTreeSet<_> = seen.values().collect();
                Ok(match (distinct.len(), last) {
                    (1, Some(last)) => Probe::Done(last),
                    _ => Probe::NotYet(format!("{seen:?}")),
                })
            },
        )
        .await
    }

    /// The operator's `flotilla`, from this process (the observer link, which no fault cuts),
    /// with the first admin token the first leader wrote.
    pub(super) async fn operator_cli(&mut self) -> Result<(Flotilla, String)> {
        let token = wait::until("the first admin token", Duration::from_secs(30), || async {
            for id in 1..=HUBS {
                if let Ok(token) = std::fs::read_to_string(self.data_dir(id).join("admin-token"))
                    && !token.trim().is_empty()
                {
                    return Ok(Probe::Done(token.trim().to_owned()));
                }
            }
            Ok(Probe::NotYet("no admin-token file yet".into()))
        })
        .await?;
        self.token = token.clone();
        Ok((self.cli(1), token))
    }

    /// The operator's `flotilla` talking to node `id`.
    pub(super) fn cli(&self, id: u64) -> Flotilla {
        Flotilla::new(&self.apis[&id]).with_credentials(&self.ca_file(), &self.token)
    }

    pub(super) fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca/ca.crt")
    }

    pub(super) fn log_tails(&self) -> String {
        self.processes
            .iter()
            .map(|(id, p)| format!("hub{id}:\n{}", p.stderr_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `clusters.yaml`: four prod clusters, the first in wave one, the second in wave two.
fn inventory() -> String {
    let mut text = String::from("apiVersion: flotilla.dev/v1\nkind: ClusterInventory\nclusters:\n");
    for i in 0..CLUSTERS {
        let wave = match i {
            0 => ", wave: one",
            1 => ", wave: two",
            _ => "",
        };
        text.push_str(&format!(
            "  - name: sim-{i}\n    labels: {{env: prod{wave}}}\n"
        ));
    }
    text
}

/// The simulator and an agent per cluster, in the agents' namespace.
pub(super) struct Fleet {
    _agents: Vec<Process>,
    _sim: Process,
    _dir: TempDir,
}

impl Fleet {
    pub(super) async fn start(net: &Network, hubs: &Hubs, names: &[String]) -> Result<Fleet> {
        let dir = tempfile::tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let address = net.address("agents")?;
        let mut command = net.command("agents", binaries::SIM.path()?);
        command
            .args(["--listen", &format!("{address}:{SIM_PORT}")])
            .args([
                "--clusters",
                &CLUSTERS.to_string(),
                "--rollout-delay-ms",
                "200",
            ])
            .arg("--kubeconfig")
            .arg(&kubeconfig);
        let sim = Process::spawn("flotilla-sim", command)?;
        wait::until(
            "the simulator's kubeconfig",
            Duration::from_secs(30),
            || async {
                Ok(match kubeconfig.is_file() {
                    true => Probe::Done(()),
                    false => Probe::NotYet(sim.stderr_tail()),
                })
            },
        )
        .await?;
        hubs.wait_state("the inventory registered", |s| {
            names.iter().all(|n| s.clusters.contains_key(n))
        })
        .await?;
        let apis: Vec<&str> = hubs.apis.values().map(String::as_str).collect();
        let clock = flotilla_hub::clock::system();
        let mut agents = Vec::new();
        for name in names {
            let (issued, command) =
                IssuedBootstrapToken::generate(clock.as_ref(), name, DEFAULT_BOOTSTRAP_TOKEN_TTL);
            hubs.propose(&command).await?;
            let state = dir.path().join(name);
            std::fs::create_dir_all(&state)?;
            let token_file = state.join("bootstrap-token");
            std::fs::write(&token_file, issued.token.reveal())?;
            let mut command = net.command("agents", binaries::AGENT.path()?);
            command
                .args(["run", "--hub", &apis.join(","), "--cluster", name])
                .arg("--state-dir")
                .arg(&state)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--context", name, "--max-backoff", "1s"])
                .arg("--ca-file")
                .arg(hubs.ca_file())
                .arg("--bootstrap-token-file")
                .arg(&token_file);
            agents.push(Process::spawn(format!("flotilla-agent ({name})"), command)?);
        }
        Ok(Fleet {
            _agents: agents,
            _sim: sim,
            _dir: dir,
        })
    }
}
