//! The ledger journal the gateways of a cluster share, in PostgreSQL.
//!
//! One table holds the journal's records: sequence, record hash, and the frame (the very bytes
//! a journal file holds for the record, hash-chained to the one before). Each replica keeps its
//! ledger in memory in front of a local copy of the journal (its `Store`, in its data
//! directory), and its committer thread:
//!
//! - **follows** the table every [`TAIL_INTERVAL`] when it has nothing to commit, applying and
//!   copying the records other replicas wrote;
//! - **writes** inside a transaction that first takes one advisory lock (so one replica at a
//!   time writes, and the chain stays one chain; the primary key on `sequence` would refuse a
//!   second writer anyway), catches up with the table, checks nonces against the caught-up
//!   ledger, inserts its batch and commits, and only then appends the batch to its local copy;
//! - **resolves** a commit whose outcome it did not hear (the connection dropped during
//!   `COMMIT`): it rebuilds its ledger from the local copy, waits for PostgreSQL, and looks for
//!   its first record at its sequence. Found: the batch stands and its callers get their
//!   receipts; absent: they are told it was not taken (and usage goes back to be settled
//!   again). So a usage settlement is never written twice nor dropped.
//!
//! The operator key that signs genesis and settlements is derived from the cluster's seed, so
//! every replica signs as the one operator. A replica whose local copy is not a prefix of the
//! shared journal refuses to start; a replica that kept a journal alone until now publishes it
//! into an empty table (the way from one gateway to several).

use std::str::FromStr;
use std::time::Duration;

use ledger_store::{Published, RecordHash, Store};

/// How often an idle replica reads the records others wrote: the delay before a stake, a
/// credit or a settlement made at one replica counts at the others.
pub const TAIL_INTERVAL: Duration = Duration::from_millis(100);
/// Records read per query.
const FETCH_RECORDS: i64 = 1_000;
pub(crate) const FETCH_RECORDS_USIZE: usize = FETCH_RECORDS as usize;
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged data on the connection for this long drops it (a server gone without a word).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// Statements that run longer are cancelled by the server: nothing here should take a second.
const STATEMENT_TIMEOUT_MS: u32 = 10_000;
/// Pause between attempts to learn the outcome of a commit while PostgreSQL cannot be reached.
pub(crate) const RESOLVE_RETRY: Duration = Duration::from_millis(250);
/// Longest table prefix.
const MAX_PREFIX_CHARS: usize = 40;

/// Where the shared journal is, and the operator's key every replica signs with.
#[derive(Clone)]
pub struct SharedLedgerConfig {
    /// A libpq-style URL (`postgresql://user@host/db`) or key-value string (`host=/run/pg
    /// user=gondola`).
    pub postgres_url: String,
    /// The table is `{prefix}_ledger_journal`: letters, digits and `_`, starting with a letter.
    pub prefix: String,
    /// The operator's secp256k1 secret, derived from the cluster seed.
    pub operator_secret: [u8; 32],
    /// The certificate authority (PEM) a server's certificate is checked against over TCP,
    /// instead of the system's. TLS is used where the server offers it (`sslmode=prefer`, the
    /// default) or always (`sslmode=require` in the URL, which is what to write); a Unix socket
    /// goes without.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SharedLedgerConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the URL (it may hold a password) nor the secret.
        formatter
            .debug_struct("SharedLedgerConfig")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("PostgreSQL: {}", with_causes(.0))]
    Postgres(#[from] postgres::Error),
    #[error("the ledger store: {0}")]
    Store(#[from] ledger_store::StoreError),
    #[error("{0}")]
    Config(String),
    #[error(
        "this data directory's ledger is not the cluster's: {0}. Start the replica with a data \
         directory of its own, or move its ledger directory away to follow the cluster's"
    )]
    Foreign(String),
}

/// An error and what caused it, as one line (a failed TLS handshake says why).
fn with_causes(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

/// The shared journal: its table, and the committer thread's one connection to it.
pub(crate) struct SharedJournal {
    /// The connection settings, for the synchronous client here and the asynchronous one of
    /// the usage queue.
    settings: tokio_postgres::Config,
    config: postgres::Config,
    /// `None` where TLS cannot apply: every host a Unix socket, or `sslmode=disable`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    client: Option<postgres::Client>,
    table: String,
    lock_key: i64,
    /// The API keys' table (`id`, the key as JSON or NULL once deleted, `version`), and the
    /// sequence and lock that order its changes.
    keys_table: String,
    key_versions: String,
    keys_lock_key: i64,
    /// The usage queue (`usage.rs`): each metered request's usage until a settlement takes it.
    usage_table: String,
    /// This process among the replicas: its rows in the usage queue. Random at each start, so
    /// the rows of a replica that stopped are never taken for a live one's.
    replica: [u8; 16],
}

/// How to open an asynchronous connection to the cluster's PostgreSQL.
#[derive(Clone)]
pub(crate) struct Connector {
    settings: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    /// A client, its connection driven by a task of the current runtime until the client is
    /// dropped.
    pub(crate) async fn connect(&self) -> Result<tokio_postgres::Client, SharedError> {
        let client = match &self.tls {
            Some(tls) => {
                let (client, connection) = self.settings.connect(tls.clone()).await?;
                tokio::spawn(connection);
                client
            }
            None => {
                let (client, connection) = self.settings.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(connection);
                client
            }
        };
        Ok(client)
    }
}

impl SharedJournal {
    pub(crate) fn new(config: &SharedLedgerConfig) -> Result<Self, SharedError> {
        let prefix = &config.prefix;
        let valid = prefix.chars().count() <= MAX_PREFIX_CHARS
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(SharedError::Config(format!(
                "the cluster prefix {prefix:?} cannot name a table: use at most \
                 {MAX_PREFIX_CHARS} lower-case letters, digits and `_`, starting with a letter"
            )));
        }
        let mut settings =
            tokio_postgres::Config::from_str(&config.postgres_url).map_err(|error| {
                SharedError::Config(format!("the PostgreSQL URL is not usable: {error}"))
            })?;
        if settings.get_connect_timeout().is_none() {
            settings.connect_timeout(CONNECT_TIMEOUT);
        }
        settings
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .keepalives(true)
            .application_name("gondola-gateway")
            .options(format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"));
        let postgres = postgres::Config::from(settings.clone());
        let sockets_only = postgres
            .get_hosts()
            .iter()
            .all(|host| matches!(host, postgres::config::Host::Unix(_)));
        let tls = if sockets_only || postgres.get_ssl_mode() == postgres::config::SslMode::Disable {
            None
        } else {
            Some(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
                config.ca_file.as_deref(),
            )?))
        };
        let table = format!("{prefix}_ledger_journal");
        let lock = |name: &str| {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(format!("gondola lock: {name}"));
            i64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
        };
        let keys_table = format!("{prefix}_api_keys");
        Ok(Self {
            settings,
            config: postgres,
            tls,
            client: None,
            usage_table: format!("{prefix}_usage_queue"),
            replica: rand::random(),
            lock_key: lock(&table),
            table,
            keys_lock_key: lock(&keys_table),
            key_versions: format!("{prefix}_api_key_versions"),
            keys_table,
        })
    }

    fn client(&mut self) -> Result<&mut postgres::Client, SharedError> {
        let client = self.take_client()?;
        Ok(self.client.insert(client))
    }

    pub(crate) fn connector(&self) -> Connector {
        Connector {
            settings: self.settings.clone(),
            tls: self.tls.clone(),
        }
    }

    pub(crate) fn usage_table(&self) -> &str {
        &self.usage_table
    }

    pub(crate) fn replica(&self) -> [u8; 16] {
        self.replica
    }

    /// The connection (made if there is none), taken out for a transaction; given back with
    /// [`SharedJournal::give_back`] once the transaction is over.
    fn take_client(&mut self) -> Result<postgres::Client, SharedError> {
        match self.client.take() {
            Some(client) if !client.is_closed() => Ok(client),
            _ => Ok(match &self.tls {
                Some(tls) => self.config.connect(tls.clone())?,
                None => self.config.connect(postgres::NoTls)?,
            }),
        }
    }

    /// Keeps a writer's connection for the next use, if its transaction ended cleanly.
    pub(crate) fn give_back(&mut self, writer: Writer) {
        self.client = writer.into_client();
    }

    /// Drops the connection after an error, so the next use makes a new one.
    pub(crate) fn disconnect(&mut self) {
        self.client = None;
    }

    /// Begins a transaction that holds the writer's lock, with the store caught up to the table
    /// inside it; returns the transaction and the records it applied.
    pub(crate) fn begin(
        &mut self,
        store: &mut Store,
    ) -> Result<(Writer, Vec<ledger_store::Record>), SharedError> {
        let mut writer = self.lock()?;
        let applied = catch_up(writer.client()?, &self.table, store)?;
        Ok((writer, applied))
    }

    /// A transaction on the connection that holds the writer's lock.
    fn lock(&mut self) -> Result<Writer, SharedError> {
        let mut client = self.take_client()?;
        client.batch_execute("BEGIN")?;
        client.execute("SELECT pg_advisory_xact_lock($1)", &[&self.lock_key])?;
        Ok(Writer {
            client: Some(client),
            table: self.table.clone(),
            usage_table: self.usage_table.clone(),
            replica: self.replica,
            open: true,
        })
    }

    /// The frames of up to [`FETCH_RECORDS_USIZE`] records after `after`, in order, read
    /// without the writer's lock.
    pub(crate) fn fetch(&mut self, after: u64) -> Result<Vec<Vec<u8>>, SharedError> {
        let table = self.table.clone();
        let client = self.client()?;
        fetch_page(client, &table, after)
    }

    /// Whether `record_hash` is the shared journal's record at `sequence`: how a commit whose
    /// outcome was not heard is decided, once the writer's lock it held is released.
    pub(crate) fn holds(
        &mut self,
        sequence: u64,
        record_hash: RecordHash,
    ) -> Result<bool, SharedError> {
        let table = self.table.clone();
        let client = self.client()?;
        let row = client.query_opt(
            &format!("SELECT record_hash FROM {table} WHERE sequence = $1"),
            &[&sql_sequence(sequence)?],
        )?;
        Ok(row.is_some_and(|row| row.get::<_, &[u8]>(0) == record_hash.0.as_slice()))
    }

    /// At start, inside the lock: makes the table if there is none, checks that the local
    /// journal is the shared one's prefix (publishing it if the table is empty), and catches
    /// up. The caller writes genesis with the returned writer when the ledger has none.
    pub(crate) fn start(&mut self, store: &mut Store) -> Result<Writer, SharedError> {
        let table = self.table.clone();
        let mut writer = self.lock()?;
        let transaction = writer.client()?;
        let (keys_table, key_versions) = (&self.keys_table, &self.key_versions);
        let usage_table = &self.usage_table;
        transaction.batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {table} (\
               sequence BIGINT PRIMARY KEY CHECK (sequence > 0), \
               record_hash BYTEA NOT NULL, \
               frame BYTEA NOT NULL); \
             CREATE SEQUENCE IF NOT EXISTS {key_versions}; \
             CREATE TABLE IF NOT EXISTS {keys_table} (\
               id TEXT PRIMARY KEY, \
               key TEXT, \
               version BIGINT NOT NULL); \
             CREATE INDEX IF NOT EXISTS {keys_table}_by_version ON {keys_table} (version); \
             CREATE TABLE IF NOT EXISTS {usage_table} (\
               replica BYTEA NOT NULL, \
               row_id BIGINT NOT NULL, \
               day BIGINT NOT NULL, \
               account BYTEA NOT NULL, \
               requests BIGINT NOT NULL, \
               prompt_tokens BIGINT NOT NULL, \
               completion_tokens BIGINT NOT NULL, \
               allowance_units BYTEA NOT NULL, \
               bundled_credit_units BYTEA NOT NULL, \
               usd_units BYTEA NOT NULL, \
               queued_at TIMESTAMPTZ NOT NULL DEFAULT now(), \
               PRIMARY KEY (replica, row_id)); \
             CREATE INDEX IF NOT EXISTS {usage_table}_by_age ON {usage_table} (queued_at);"
        ))?;
        let shared_last: i64 = transaction
            .query_one(
                &format!("SELECT COALESCE(MAX(sequence), 0) FROM {table}"),
                &[],
            )?
            .get(0);
        let shared_last = u64::try_from(shared_last).unwrap_or_default();
        let local_last = store.last_sequence();
        if shared_last == 0 && local_last > 0 {
            let frames = store.frames_after(0)?;
            tracing::info!(
                records = frames.len(),
                "publishing this gateway's ledger journal as the cluster's"
            );
            for chunk in frames.chunks(usize::try_from(FETCH_RECORDS).unwrap_or(1_000)) {
                insert(
                    transaction,
                    &table,
                    chunk
                        .iter()
                        .map(|(sequence, hash, frame)| (*sequence, *hash, frame.as_slice())),
                )?;
            }
        } else if local_last > shared_last {
            return Err(SharedError::Foreign(format!(
                "it holds {local_last} records, the cluster's {shared_last}"
            )));
        } else if local_last > 0 {
            let row = transaction.query_opt(
                &format!("SELECT record_hash FROM {table} WHERE sequence = $1"),
                &[&sql_sequence(local_last)?],
            )?;
            let matches = row
                .is_some_and(|row| row.get::<_, &[u8]>(0) == store.last_record_hash().0.as_slice());
            if !matches {
                return Err(SharedError::Foreign(format!(
                    "its record {local_last} is not the cluster's"
                )));
            }
        }
        catch_up(transaction, &table, store)?;
        Ok(writer)
    }
}

impl SharedJournal {
    /// Writes a key as made or changed (`Some`, its JSON) or deleted (`None`), with the next
    /// version, under the key table's lock so versions become visible in order.
    pub(crate) fn write_key(&mut self, id: &str, key: Option<&str>) -> Result<(), SharedError> {
        self.with_keys_locked(|transaction, table, versions| {
            match key {
                Some(key) => transaction.execute(
                    &format!(
                        "INSERT INTO {table} (id, key, version) VALUES ($1, $2, nextval('{versions}')) \
                         ON CONFLICT (id) DO UPDATE SET key = EXCLUDED.key, version = EXCLUDED.version"
                    ),
                    &[&id, &key],
                )?,
                None => transaction.execute(
                    &format!(
                        "UPDATE {table} SET key = NULL, version = nextval('{versions}') WHERE id = $1"
                    ),
                    &[&id],
                )?,
            };
            Ok(())
        })
    }

    /// Publishes keys this replica held before it joined, where the table has none of that id.
    pub(crate) fn publish_keys(&mut self, keys: &[(String, String)]) -> Result<(), SharedError> {
        if keys.is_empty() {
            return Ok(());
        }
        self.with_keys_locked(|transaction, table, versions| {
            for (id, key) in keys {
                transaction.execute(
                    &format!(
                        "INSERT INTO {table} (id, key, version) VALUES ($1, $2, nextval('{versions}')) \
                         ON CONFLICT (id) DO NOTHING"
                    ),
                    &[id, key],
                )?;
            }
            Ok(())
        })
    }

    /// Runs `work` in a transaction that holds the key table's lock (so versions become
    /// visible in the order they were taken), with the table's and its sequence's names, and
    /// commits.
    fn with_keys_locked(
        &mut self,
        work: impl FnOnce(&mut postgres::Transaction<'_>, &str, &str) -> Result<(), SharedError>,
    ) -> Result<(), SharedError> {
        let (table, versions, lock_key) = (
            self.keys_table.clone(),
            self.key_versions.clone(),
            self.keys_lock_key,
        );
        let client = self.client()?;
        let mut transaction = client.transaction()?;
        transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key])?;
        work(&mut transaction, &table, &versions)?;
        transaction.commit()?;
        Ok(())
    }

    /// Key changes after `version`, oldest first: (version, id, the key's JSON or `None` once
    /// deleted).
    pub(crate) fn fetch_keys(
        &mut self,
        version: i64,
    ) -> Result<Vec<(i64, String, Option<String>)>, SharedError> {
        let table = self.keys_table.clone();
        let client = self.client()?;
        let rows = client.query(
            &format!(
                "SELECT version, id, key FROM {table} WHERE version > $1 ORDER BY version LIMIT $2"
            ),
            &[&version, &FETCH_RECORDS],
        )?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }
}

/// What a server's certificate is checked against: the authority in `ca_file`, or the
/// system's.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, SharedError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect())
                .map_err(|error| {
                    SharedError::Config(format!(
                        "the PostgreSQL authority {}: {error}",
                        path.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(SharedError::Config(format!(
                    "the PostgreSQL authority {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        }
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A transaction holding the writer's lock, with the store caught up inside it. It owns the
/// connection while it is open; dropped before it commits, it rolls back.
pub(crate) struct Writer {
    client: Option<postgres::Client>,
    table: String,
    usage_table: String,
    replica: [u8; 16],
    /// Between `BEGIN` and the `COMMIT` or `ROLLBACK`.
    open: bool,
}

impl Writer {
    fn client(&mut self) -> Result<&mut postgres::Client, SharedError> {
        self.client
            .as_mut()
            .ok_or_else(|| SharedError::Config("the transaction has ended".into()))
    }

    /// Commits what the transaction did without publishing records (the table made, a journal
    /// published at start).
    pub(crate) fn commit(&mut self) -> Result<(), SharedError> {
        self.client()?.batch_execute("COMMIT")?;
        self.open = false;
        Ok(())
    }

    /// The open transaction, with the usage queue's table and this replica's id: where a
    /// settlement takes its rows (`usage::take`), so they are gone exactly when the
    /// settlement's record is in.
    pub(crate) fn usage_queue(
        &mut self,
    ) -> Result<(&mut postgres::Client, &str, &[u8; 16]), SharedError> {
        let client = self
            .client
            .as_mut()
            .ok_or_else(|| SharedError::Config("the transaction has ended".into()))?;
        Ok((client, &self.usage_table, &self.replica))
    }

    /// Inserts a commit's records and commits: the `publish` of
    /// [`Store::submit_batch_published`].
    pub(crate) fn publish(&mut self, published: &Published<'_>) -> Result<(), SharedError> {
        let table = self.table.clone();
        insert(self.client()?, &table, published.records())?;
        self.commit()
    }

    /// The connection, once the transaction is over (rolled back if it was never committed);
    /// `None` if it did not end cleanly.
    fn into_client(mut self) -> Option<postgres::Client> {
        let mut client = self.client.take()?;
        if self.open {
            self.open = false;
            client.batch_execute("ROLLBACK").ok()?;
        }
        Some(client)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.open
            && let Some(client) = self.client.as_mut()
        {
            let _ = client.batch_execute("ROLLBACK");
        }
    }
}

fn sql_sequence(sequence: u64) -> Result<i64, SharedError> {
    i64::try_from(sequence).map_err(|_| {
        SharedError::Config(format!("sequence {sequence} is past PostgreSQL's BIGINT"))
    })
}

fn insert<'r>(
    client: &mut impl postgres::GenericClient,
    table: &str,
    records: impl Iterator<Item = (u64, RecordHash, &'r [u8])>,
) -> Result<(), SharedError> {
    let (mut sequences, mut hashes, mut frames) = (Vec::new(), Vec::new(), Vec::new());
    for (sequence, hash, frame) in records {
        sequences.push(sql_sequence(sequence)?);
        hashes.push(hash.0.to_vec());
        frames.push(frame);
    }
    if sequences.is_empty() {
        return Ok(());
    }
    client.execute(
        &format!(
            "INSERT INTO {table} (sequence, record_hash, frame) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BYTEA[], $3::BYTEA[])"
        ),
        &[&sequences, &hashes, &frames],
    )?;
    Ok(())
}

/// Applies every record of the table after the store's last, a page at a time.
fn catch_up(
    client: &mut impl postgres::GenericClient,
    table: &str,
    store: &mut Store,
) -> Result<Vec<ledger_store::Record>, SharedError> {
    let mut applied = Vec::new();
    loop {
        let frames = fetch_page(client, table, store.last_sequence())?;
        let count = frames.len();
        applied.extend(store.apply_published(frames)?);
        if count < FETCH_RECORDS_USIZE {
            return Ok(applied);
        }
    }
}

fn fetch_page(
    client: &mut impl postgres::GenericClient,
    table: &str,
    after: u64,
) -> Result<Vec<Vec<u8>>, SharedError> {
    let rows = client.query(
        &format!("SELECT frame FROM {table} WHERE sequence > $1 ORDER BY sequence LIMIT $2"),
        &[&sql_sequence(after)?, &FETCH_RECORDS],
    )?;
    Ok(rows
        .into_iter()
        .map(|row| row.get::<_, Vec<u8>>(0))
        .collect())
}

#[cfg(test)]
mod tests {
    //! Against a real PostgreSQL server, started for each test in a directory of its own and
    //! reached on a Unix socket there.

    use std::path::Path;
    use std::sync::Arc;

    use ledger::{Address, Op};
    use test_servers::PostgresServer;

    use super::SharedLedgerConfig;
    use crate::{Economy, EconomyConfig, Metering, Refusal, Signing};

    fn shared(server: &PostgresServer) -> SharedLedgerConfig {
        SharedLedgerConfig {
            postgres_url: server.url(),
            prefix: "test".into(),
            operator_secret: [7; 32],
            ca_file: None,
        }
    }

    /// A PostgreSQL server and two replicas sharing a ledger on it, each with a data
    /// directory of its own.
    struct Two {
        a: Arc<Economy>,
        b: Arc<Economy>,
        one: tempfile::TempDir,
        two: tempfile::TempDir,
        shared: SharedLedgerConfig,
        server: PostgresServer,
        dir: tempfile::TempDir,
    }

    fn two_replicas() -> Two {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = PostgresServer::start(dir.path());
        let shared = shared(&server);
        let (one, two) = (
            tempfile::tempdir().expect("temp dir"),
            tempfile::tempdir().expect("temp dir"),
        );
        Two {
            a: replica(one.path(), &shared),
            b: replica(two.path(), &shared),
            one,
            two,
            shared,
            server,
            dir,
        }
    }

    fn replica(dir: &Path, shared: &SharedLedgerConfig) -> Arc<Economy> {
        let mut config = EconomyConfig::in_dir(dir);
        config.shared = Some(shared.clone());
        Economy::open(config).expect("the replica opens")
    }

    async fn credit(economy: &Economy, account: Address, usd_units: u128) {
        economy
            .submit(
                economy.operator,
                Op::CreditAccount {
                    account,
                    usd_units,
                    bundled_credit_units: 0,
                },
                Signing::Operator,
            )
            .await
            .expect("credited");
    }

    /// Waits until a request's usage is in the cluster's usage queue.
    async fn durable(recorded: Option<crate::Recorded>) {
        let recorded = recorded.expect("a cluster records usage");
        assert!(
            recorded.wait(std::time::Duration::from_secs(30)).await,
            "the usage is written"
        );
    }

    fn usd(economy: &Economy, account: Address) -> u128 {
        economy.read(|store| {
            store
                .ledger()
                .balances(account, store.ledger().now_seconds())
                .usd_credit_units
        })
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn replicas_write_one_journal_each_seeing_the_others_commits_before_its_own() {
        // Every part bound, so the server and directories live to the end of the test.
        let Two {
            a,
            b,
            one,
            two,
            shared: _shared,
            server: _server,
            dir: _dir,
        } = two_replicas();
        assert_eq!(a.operator, b.operator, "one operator, from the seed");
        let genesis = |economy: &Economy| economy.read(|store| store.ledger().genesis_seconds());
        assert_eq!(genesis(&a), genesis(&b), "one genesis");

        let (x, y) = (Address([1; 20]), Address([2; 20]));
        credit(&a, x, 1_000).await;
        // The operator's next nonce at B is the one after A's commit: B caught up first.
        credit(&b, y, 500).await;
        assert_eq!(usd(&b, x), 1_000);
        credit(&a, y, 1).await;
        assert_eq!(usd(&a, y), 501);
        credit(&b, x, 1).await;
        let state = |economy: &Economy| {
            economy.read(|store| (store.last_sequence(), store.ledger().state_hash()))
        };
        assert_eq!(state(&a).0 + 1, state(&b).0);
        credit(&a, x, 1).await;
        credit(&b, x, 1).await;
        assert_eq!(usd(&b, x), 1_003);

        a.close().await;
        b.close().await;
        // Each replica's copy of the journal is a journal that verifies on its own, with the
        // chain the other wrote into.
        let (verified_a, verified_b) = (
            ledger_store::verify(&one.path().join("ledger")).expect("A's copy verifies"),
            ledger_store::verify(&two.path().join("ledger")).expect("B's copy verifies"),
        );
        assert_eq!(verified_b.last_sequence, verified_a.last_sequence + 1);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn usage_metered_at_two_replicas_is_charged_once_and_each_holds_a_share() {
        let Two {
            a,
            b,
            one: _one,
            two: _two,
            shared: _shared,
            server: _server,
            dir: _dir,
        } = two_replicas();
        let account = Address([3; 20]);
        credit(&a, account, 1_000).await;
        credit(&b, Address([4; 20]), 1).await;
        for economy in [&a, &b] {
            economy.refresh_account(account);
            economy.meter.set_replicas(2);
        }
        // Each replica may hold half of the account's 1,000 at once.
        assert!(Metering::begin(&a, account, None, 501).is_err());
        let mut at_a =
            Metering::begin(&a, account, None, 500).unwrap_or_else(|_| panic!("half is A's"));
        assert!(
            Metering::begin(&a, account, None, 1).is_err(),
            "A holds its half"
        );
        let mut at_b =
            Metering::begin(&b, account, None, 500).unwrap_or_else(|_| panic!("half is B's"));
        durable(at_a.finish(300, 10, 10)).await;
        durable(at_b.finish(200, 10, 10)).await;
        drop((at_a, at_b));
        a.flush().await;
        b.flush().await;
        credit(&a, Address([4; 20]), 1).await;
        assert_eq!(
            usd(&a, account),
            500,
            "charged 300 at A and 200 at B, once each"
        );
        // What is left is divided again.
        a.refresh_account(account);
        assert!(Metering::begin(&a, account, None, 251).is_err());
        assert!(Metering::begin(&a, account, None, 250).is_ok());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn usage_a_replica_recorded_but_never_settled_is_settled_once_by_another() {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = PostgresServer::start(dir.path());
        let shared = shared(&server);
        let (one, two) = (
            tempfile::tempdir().expect("temp dir"),
            tempfile::tempdir().expect("temp dir"),
        );
        let replica = |dir: &Path| {
            let mut config = EconomyConfig::in_dir(dir);
            config.shared = Some(shared.clone());
            config.usage_flush_interval = std::time::Duration::from_millis(20);
            Economy::open(config).expect("the replica opens")
        };
        let (a, b) = (replica(one.path()), replica(two.path()));
        let account = Address([9; 20]);
        credit(&a, account, 1_000).await;
        a.refresh_account(account);
        let mut first =
            Metering::begin(&a, account, None, 300).unwrap_or_else(|_| panic!("reserved"));
        let mut second =
            Metering::begin(&a, account, None, 300).unwrap_or_else(|_| panic!("reserved"));
        durable(first.finish(250, 5, 5)).await;
        durable(second.finish(50, 1, 1)).await;
        // The replica stops without settling: its usage is only in the queue.
        drop((first, second));
        drop(a);
        // The synchronous client runs on a thread of its own, outside the test's runtime.
        let queued = || -> i64 {
            let url = server.url();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("psql");
                client
                    .query_one("SELECT count(*) FROM test_usage_queue", &[])
                    .expect("count")
                    .get(0)
            })
            .join()
            .expect("counted")
        };
        assert_eq!(queued(), 2);

        // The other replica's flushes settle it once it is older than `adopt_after`.
        let started = std::time::Instant::now();
        while usd(&b, account) != 700 {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the stopped replica's usage was not settled"
            );
            b.flush().await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(queued(), 0, "the rows left with their settlement");
        for _ in 0..3 {
            b.flush().await;
        }
        credit(&b, Address([10; 20]), 1).await;
        assert_eq!(usd(&b, account), 700, "charged once");
        let tokens: Vec<_> = b.read(|store| {
            store
                .ledger()
                .usage_history(account)
                .map(|(_, usage)| (usage.requests, usage.prompt_tokens, usage.completion_tokens))
                .collect()
        });
        assert_eq!(tokens, [(2, 6, 6)], "both requests, in one day's usage");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn without_postgres_nothing_is_written_and_usage_waits_for_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = PostgresServer::start(dir.path());
        let shared = shared(&server);
        let one = tempfile::tempdir().expect("temp dir");
        let a = replica(one.path(), &shared);
        let account = Address([5; 20]);
        credit(&a, account, 1_000).await;
        a.refresh_account(account);
        let mut metering =
            Metering::begin(&a, account, None, 400).unwrap_or_else(|_| panic!("reserved"));

        server.stop();
        let refused = a
            .submit(
                a.operator,
                Op::CreditAccount {
                    account,
                    usd_units: 1,
                    bundled_credit_units: 0,
                },
                Signing::Operator,
            )
            .await;
        assert!(matches!(refused, Err(Refusal::NotTaken(_))), "{refused:?}");
        assert!(!a.is_healthy(), "metered requests are refused meanwhile");
        assert!(Metering::begin(&a, account, None, 1).is_err());
        // A request that was running finishes; its usage can be neither written to the queue
        // nor settled yet, and is kept.
        let recorded = metering.finish(400, 1, 1).expect("a cluster records usage");
        drop(metering);
        a.flush().await;

        server.restart();
        durable(Some(recorded)).await;
        credit(&a, Address([6; 20]), 1).await;
        assert!(a.is_healthy());
        a.flush().await;
        credit(&a, Address([6; 20]), 1).await;
        assert_eq!(
            usd(&a, account),
            600,
            "the usage was settled once, after the outage"
        );
    }

    /// Opens an economy whose directory an economy dropped a moment ago held: its committer
    /// thread lets the journal go once it sees the queue closed.
    async fn open_when_free(config: EconomyConfig) -> std::io::Result<Arc<Economy>> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            match Economy::open(config.clone()) {
                Err(error)
                    if error.to_string().contains("open in another process")
                        && std::time::Instant::now() < deadline =>
                {
                    tokio::task::yield_now().await;
                }
                opened => return opened,
            }
        }
    }

    /// Waits (at most five seconds) until `holds` is true, and says how long that took.
    async fn until(mut holds: impl FnMut() -> bool) -> std::time::Duration {
        let started = std::time::Instant::now();
        while !holds() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "not within five seconds"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        started.elapsed()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_key_made_at_one_replica_works_at_the_others_and_its_deletion_reaches_them() {
        let Two {
            a,
            b,
            one: _one,
            two: _two,
            shared,
            mut server,
            dir: _dir,
        } = two_replicas();
        let account = Address([9; 20]);
        credit(&a, account, 1_000).await;
        let minted = a
            .create_key(
                account,
                crate::KeyKind::Inference,
                "shared".into(),
                None,
                None,
                0,
            )
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let hash = crate::hash_secret(&minted.secret);
        let seen = until(|| b.keys.find(&hash).is_some()).await;
        assert!(seen < crate::shared::TAIL_INTERVAL * 10, "{seen:?}");
        // B knows the account's balance with its key.
        assert!(Metering::begin(&b, account, Some(&minted.key.id), 100).is_ok());

        // Deleted at B: refused at A within the tail interval and a query.
        b.delete_key(account, &minted.key.id)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(b.keys.find(&hash).is_none());
        let gone = until(|| a.keys.find(&hash).is_none()).await;
        assert!(gone < crate::shared::TAIL_INTERVAL * 10, "{gone:?}");

        // A replica that starts later takes the table as it is.
        let three = tempfile::tempdir().expect("temp dir");
        let kept = a
            .create_key(account, crate::KeyKind::Admin, "kept".into(), None, None, 0)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let c = replica(three.path(), &shared);
        assert!(c.keys.find(&crate::hash_secret(&kept.secret)).is_some());
        assert!(c.keys.find(&hash).is_none());

        // Without PostgreSQL a key is not made, and one is not deleted.
        server.stop();
        let refused = a
            .create_key(
                account,
                crate::KeyKind::Inference,
                "lost".into(),
                None,
                None,
                0,
            )
            .await;
        assert!(
            matches!(refused, Err(crate::keys::KeyError::Unavailable(_))),
            "{:?}",
            refused.err()
        );
        assert_eq!(
            a.keys.list(account).len(),
            1,
            "the unshared key was not kept"
        );
        let refused = a.delete_key(account, &kept.key.id).await;
        assert!(matches!(
            refused,
            Err(crate::keys::KeyError::Unavailable(_))
        ));
        assert!(a.keys.find(&crate::hash_secret(&kept.secret)).is_some());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_gateways_own_ledger_becomes_the_clusters_and_a_foreign_one_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = PostgresServer::start(dir.path());
        let shared = shared(&server);
        // A gateway that kept its ledger alone.
        let alone = tempfile::tempdir().expect("temp dir");
        let account = Address([8; 20]);
        {
            let economy = Economy::open(EconomyConfig::in_dir(alone.path())).expect("opens");
            credit(&economy, account, 42).await;
            economy.close().await;
        }
        // It joins an empty cluster: its journal is published as the cluster's (once its
        // committer thread, which ends after the economy is dropped, has let the journal go).
        let mut config = EconomyConfig::in_dir(alone.path());
        config.shared = Some(shared.clone());
        let a = open_when_free(config).await.expect("joins");
        // A new replica is given its operator key, and follows that ledger.
        let joining = tempfile::tempdir().expect("temp dir");
        std::fs::copy(
            alone.path().join("operator.key"),
            joining.path().join("operator.key"),
        )
        .expect("copy the operator key");
        let b = replica(joining.path(), &shared);
        assert_eq!(usd(&b, account), 42);
        credit(&b, account, 1).await;
        credit(&a, account, 1).await;
        assert_eq!(usd(&a, account), 44);

        // Another gateway's own ledger is another history: refused, naming the data directory.
        let other = tempfile::tempdir().expect("temp dir");
        {
            let economy = Economy::open(EconomyConfig::in_dir(other.path())).expect("opens");
            credit(&economy, account, 7).await;
            credit(&economy, account, 7).await;
            credit(&economy, account, 7).await;
            credit(&economy, account, 7).await;
            economy.close().await;
        }
        std::fs::remove_file(other.path().join("operator.key")).expect("remove");
        std::fs::copy(
            alone.path().join("operator.key"),
            other.path().join("operator.key"),
        )
        .expect("copy the operator key");
        let mut config = EconomyConfig::in_dir(other.path());
        config.shared = Some(shared.clone());
        let refused = open_when_free(config).await.err().expect("refused");
        assert!(
            refused.to_string().contains("not the cluster's"),
            "{refused}"
        );
        // A replica with no key of its own derives the seed's, which is not this ledger's.
        let stranger = tempfile::tempdir().expect("temp dir");
        let mut config = EconomyConfig::in_dir(stranger.path());
        config.shared = Some(shared.clone());
        let refused = Economy::open(config).err().expect("refused");
        assert!(refused.to_string().contains("operator"), "{refused}");
    }
}
