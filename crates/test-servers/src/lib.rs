//! Real servers for Gondola's tests, each started in a directory of its own and reached on a
//! Unix socket there, so tests run side by side without ports: PostgreSQL and Redis from
//! Debian's packages (`scripts/system-deps.sh --tests` installs them); and an anvil node, on a
//! loopback port it picks, from the npm package `contracts/` pins.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A `postgres` server in `dir` (run as the `postgres` user when the tests run as root,
/// which PostgreSQL refuses to be), listening on a Unix socket only.
pub struct PostgresServer {
    child: Option<Child>,
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<String>,
    /// Where it listens beside its Unix socket: `listen_addresses` and the rest of its TCP and
    /// TLS settings, as `-c` arguments.
    listen: Vec<String>,
    port: Option<u16>,
}

/// The newest PostgreSQL of Debian's layout (`/usr/lib/postgresql/N/bin`).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/system-deps.sh --tests)")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL with initdb").1
}

/// The uid of `user`, from /etc/passwd.
fn uid_of(user: &str) -> Option<u32> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == user).then(|| fields.nth(1)?.parse().ok())?
        })
}

impl PostgresServer {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, vec!["listen_addresses=".to_owned()])
    }

    /// As [`PostgresServer::start`], also listening on 127.0.0.1:`port` with TLS only, under
    /// the certificate and key in `cert` and `key` (PEM); [`PostgresServer::tls_url`] reaches it.
    pub fn start_tls(dir: &Path, port: u16, cert: &Path, key: &Path) -> Self {
        let (server_cert, server_key) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::copy(cert, &server_cert).expect("copy the certificate");
        std::fs::copy(key, &server_key).expect("copy the key");
        // PostgreSQL takes a key only its own user can read.
        std::fs::set_permissions(
            &server_key,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod the key");
        let mut server = Self::start_with(
            dir,
            vec![
                "listen_addresses=127.0.0.1".to_owned(),
                format!("port={port}"),
                "ssl=on".to_owned(),
                format!("ssl_cert_file={}", server_cert.display()),
                format!("ssl_key_file={}", server_key.display()),
            ],
        );
        server.port = Some(port);
        server
    }

    /// The URL of a server started with [`PostgresServer::start_tls`]: over TCP, TLS required.
    pub fn tls_url(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=gondola dbname=postgres sslmode=require",
            self.port.unwrap_or_default()
        )
    }

    fn start_with(dir: &Path, listen: Vec<String>) -> Self {
        let bin = postgres_bin();
        let root = std::env::var("USER").ok().as_deref() == Some("root")
            || std::fs::metadata("/proc/self")
                .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta) == 0)
                .unwrap_or(false);
        let run_as = root.then(|| "postgres".to_owned());
        if root {
            let uid = uid_of("postgres").expect("a postgres user (Debian's package makes it)");
            for path in std::iter::once(dir.to_owned()).chain(
                ["server.crt", "server.key"]
                    .iter()
                    .map(|name| dir.join(name))
                    .filter(|path| path.exists()),
            ) {
                std::os::unix::fs::chown(&path, Some(uid), None).expect("chown for postgres");
            }
        }
        let mut server = Self {
            child: None,
            dir: dir.to_owned(),
            bin,
            run_as,
            listen,
            port: None,
        };
        let initdb = server
            .command("initdb")
            .args([
                "--auth=trust",
                "--username=gondola",
                "--no-sync",
                "--pgdata",
            ])
            .arg(dir.join("data"))
            .output()
            .expect("run initdb");
        assert!(
            initdb.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        server.restart();
        server
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .args(["--reuid", user, "--regid", user, "--init-groups", "--"])
                    .arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    pub fn url(&self) -> String {
        format!("host={} user=gondola dbname=postgres", self.dir.display())
    }

    /// The server's processes: the postmaster and every process it started (one per
    /// connection, and its workers), from `/proc`.
    pub fn pids(&self) -> Vec<u32> {
        let Some(postmaster) = self.child.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            // The fields after the command's closing parenthesis: state, then the parent's pid.
            let parent = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                });
            if parent == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Stops it at once, as a crash would (PostgreSQL's immediate shutdown).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on its data, and returns once it takes connections.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(
                self.listen
                    .iter()
                    .flat_map(|setting| ["-c", setting.as_str()]),
            )
            .args(["-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start postgres");
        let stderr = child.stderr.take().expect("stderr");
        let (ready, is_ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to accept connections")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        is_ready
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("postgres is ready");
        self.child = Some(child);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `redis-server` on a Unix socket in `dir`, writing its append-only file there.
pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    /// Further arguments (durability, TLS).
    extra: Vec<String>,
}

impl RedisServer {
    /// Durable: it syncs its append-only file before it answers (`appendfsync always`), as a
    /// cluster's Redis must.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &["--appendonly", "yes", "--appendfsync", "always"])
    }

    /// Without an append-only file: what a gateway must refuse.
    pub fn start_volatile(dir: &Path) -> Self {
        Self::start_with(dir, &["--appendonly", "no"])
    }

    /// As [`RedisServer::start`], also speaking TLS on `port` with `cert` and `key` (PEM).
    pub fn start_tls(dir: &Path, port: u16, cert: &Path, key: &Path) -> Self {
        let (cert, key, port) = (
            cert.display().to_string(),
            key.display().to_string(),
            port.to_string(),
        );
        Self::start_with(
            dir,
            &[
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--tls-port",
                &port,
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &cert,
                "--tls-auth-clients",
                "no",
            ],
        )
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            dir: dir.to_owned(),
            extra: extra.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.dir.join("redis.sock"))
            .args(&self.extra)
            .args(["--unixsocketperm", "700", "--dir"])
            .arg(&self.dir)
            .args(["--save", "", "--logfile", ""])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian's redis-server package)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // "Ready to accept connections" (7.2 and later), "… now ready to accept connections
        // at …" (7.0).
        while !lines
            .next()
            .expect("redis-server said it was ready")
            .expect("a line")
            .to_ascii_lowercase()
            .contains("ready to accept connections")
        {}
        // Its later lines are not read; they go nowhere.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// Stops it at once (SIGKILL).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on its files.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `anvil` node (Foundry's, from the npm package `contracts/` pins; `npm ci` there installs
/// it) on 127.0.0.1 at a port it picks, with its ten funded development accounts.
pub struct AnvilServer {
    child: Child,
    url: String,
}

/// The first of anvil's development accounts' private keys (the well-known test mnemonic's):
/// funded with 10,000 ether on every fresh node.
pub const ANVIL_FIRST_KEY: &str =
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

impl AnvilServer {
    pub fn start() -> Self {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        let mut child = Command::new(&binary)
            .args(["--host", "127.0.0.1", "--port", "0", "--chain-id", "31337"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot start {} (npm ci in contracts/ installs it): {error}",
                    binary.display()
                )
            });
        let stdout = child.stdout.take().expect("anvil's output");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("anvil says where it listens")
                .expect("anvil's output");
            if let Some(address) = line.strip_prefix("Listening on ") {
                break format!("http://{}", address.trim());
            }
        };
        // Its further output is read and dropped, so that it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for AnvilServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
