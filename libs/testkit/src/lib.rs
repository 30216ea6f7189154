//! Test support shared by the crates' tests (and the benchmarks of `followupctl`).
//!
//! - [`NatsServer`] runs a private nats-server with JetStream (2.12 or later, writing to
//!   disk before it acknowledges) on a free loopback port with its own store directory, the way the NATS client's own tests do, so tests never see each other's
//!   streams or messages. It is stopped and its directory removed when dropped.
//! - [`NatsCluster`] runs several such servers as one JetStream cluster on loopback ports,
//!   for tests that kill and restart a node.
//! - [`NatsOptions`] adds configuration to a server: the deployment's accounts and
//!   permissions, say, with the environment they read their passwords from.
//! - [`HeldTransaction`] leaves a transaction open in another database of the server, to show
//!   what a forgotten session does to the readers of the event store.
//! - [`OidcProvider`] runs a real OpenID Connect provider (the `oidc-provider` package on
//!   Node.js) on a free loopback port, for the tests of sign-in and access tokens.
//! - [`TcpProxy`] stands between a service and its database, and can cut the connection for a
//!   while, to show what happens when the database is unreachable.

mod held;
mod oidc;
mod proxy;

pub use held::HeldTransaction;
pub use oidc::{issuer_on, OidcOptions, OidcProvider};
pub use proxy::TcpProxy;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a test adds to a server's configuration.
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// Lines added to the configuration file (`include accounts.conf`, say).
    pub config: String,
    /// Files written next to the configuration file, by name (what `config` includes: NATS
    /// resolves includes relative to the including file).
    pub files: Vec<(String, String)>,
    /// Environment variables of the server process (passwords the configuration reads).
    pub env: Vec<(String, String)>,
}

/// A private NATS server with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    /// The running server process (`None` while stopped).
    child: Option<Child>,
    /// Its client port on 127.0.0.1.
    port: u16,
    /// Its JetStream store directory, removed on drop.
    store_dir: PathBuf,
    /// What the test added to its configuration.
    options: NatsOptions,
}

impl NatsServer {
    /// Starts a server on a free port; panics with a clear message when it cannot.
    pub fn start() -> Self {
        Self::start_with(NatsOptions::default())
    }

    /// Starts a server on a free port with `options` added to its configuration.
    pub fn start_with(options: NatsOptions) -> Self {
        Self::start_on(free_port(), options)
    }

    fn start_on(port: u16, options: NatsOptions) -> Self {
        let store_dir = std::env::temp_dir().join(format!(
            "followup-nats-{}-{}",
            std::process::id(),
            uuid_like()
        ));
        std::fs::create_dir_all(&store_dir).expect("create the NATS store directory");
        for (name, content) in &options.files {
            std::fs::write(store_dir.join(name), content).expect("write a NATS config file");
        }
        let mut server = Self {
            child: None,
            port,
            store_dir,
            options,
        };
        server.restart();
        server
    }

    /// The URL clients connect to.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The store directory (for tests that inspect it).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// Stops the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same store (after [`Self::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        // Messages up to 8 MiB reach the workers, so that their own 1 MiB limit is what
        // refuses larger ones (the server's default would refuse them at publishing). JetStream
        // writes to disk before it acknowledges, as in every shipped configuration. The
        // streams reserve 10 GiB each; with no `max_file_store` the server would allow only
        // 75 % of the disk free at its start, and refuse them on a fuller disk.
        let config = self.store_dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "max_payload: 8MB\njetstream {{\n  store_dir: {:?}\n  sync_interval: always\n  max_file_store: 1TB\n}}\n{}\n",
                self.store_dir.join("jetstream"),
                self.options.config
            ),
        )
        .expect("write the NATS configuration");
        let log = self.store_dir.join("nats.log");
        let mut child = Command::new(nats_server_binary())
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-c"])
            .arg(&config)
            .arg("-l")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.store_dir.join("nats.stderr"))
                    .expect("create the NATS stderr file"),
            )
            .spawn()
            .expect(NATS_SERVER_MISSING);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let read = |name| std::fs::read_to_string(self.store_dir.join(name));
                panic!(
                    "nats-server exited ({status}): {}{}\n{NATS_SERVER_MISSING}",
                    read("nats.stderr").unwrap_or_default(),
                    read("nats.log").unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "nats-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// A connected client.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .expect("connect to the test nats-server")
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("FOLLOWUP_KEEP_NATS").is_none() {
            let _ = std::fs::remove_dir_all(&self.store_dir);
        }
    }
}

const NATS_SERVER_MISSING: &str = "the tests need nats-server 2.12 or later: \
    deploy/ensure-services.sh installs it into .local/nats-server (FOLLOWUP_NATS_SERVER names \
    another binary)";

/// The nats-server the tests start: `FOLLOWUP_NATS_SERVER`, else the one that
/// deploy/ensure-services.sh installs into the workspace's `.local/nats-server/`, else the
/// first on `PATH`.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("FOLLOWUP_NATS_SERVER") {
        return path.into();
    }
    let installed =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.local/nats-server/bin/nats-server");
    if installed.is_file() {
        installed
    } else {
        "nats-server".into()
    }
}

/// Private NATS servers forming one JetStream cluster on loopback ports. Dropped, it stops
/// every node and removes their directories.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in start order.
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes (each with `options` too) and waits until they take connections.
    pub async fn start(size: usize, options: &NatsOptions) -> Self {
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats-route://127.0.0.1:{route}"))
            .collect();
        let nodes = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route))| {
                let mut node = options.clone();
                node.config = format!(
                    "server_name: node-{i}\ncluster {{\n  name: test-cluster\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n{}",
                    routes.join(", "),
                    options.config
                );
                NatsServer::start_on(*client, node)
            })
            .collect();
        let cluster = Self { nodes };
        cluster.wait_for_jetstream().await;
        cluster
    }

    /// Every node's client URL, comma-separated (what `NATS_URL` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same with `user:password@` in each URL.
    pub fn urls_as(&self, user: &str, password: &str) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://{user}:{password}@127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Node `i`.
    pub fn node(&mut self, i: usize) -> &mut NatsServer {
        &mut self.nodes[i]
    }

    /// Waits until every node takes connections. (Creating a stream may still fail for a
    /// moment, until the nodes have elected a JetStream meta leader: retry it.)
    async fn wait_for_jetstream(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self
            .nodes
            .iter()
            .all(|n| TcpStream::connect((Ipv4Addr::LOCALHOST, n.port)).is_ok())
        {
            assert!(
                Instant::now() < deadline,
                "the NATS cluster did not start in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A loopback port free at the moment of asking.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// A name part unique within this process.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos}", NEXT.fetch_add(1, Ordering::Relaxed))
}
