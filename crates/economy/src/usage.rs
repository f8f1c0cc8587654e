//! The usage queue of a cluster, in PostgreSQL (`{prefix}_usage_queue`).
//!
//! A gateway alone keeps a request's usage in memory until the next flush, and a crash loses
//! that much. In a cluster, each metered request's usage is also written as a row of the queue
//! (by one task per replica, many rows per insert) and the gateway holds the end of the
//! response until the row is durable, so a replica killed at any moment has lost no usage it
//! acknowledged. Rows are taken out of the queue by the settlement that charges them, in the
//! transaction that writes the settlement's journal record, so each is charged exactly once:
//!
//! - a replica settles its own rows at each flush, as before;
//! - any replica settles rows older than [`adopt_after`] (a replica that stopped, or was cut off
//!   from PostgreSQL and came back), one day's worth at a time. If their replica is alive
//!   after all, its own settlement of them finds them gone and forgets them.
//!
//! A row names the account, the day, token counts and the amounts drawn from each source; no
//! content, key or address other than the account's, and it is gone once settled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ledger::{Address, UsageCharge};
use tokio::sync::oneshot;

use crate::meter::{Draw, Meter};
use crate::shared::{Connector, RESOLVE_RETRY, SharedError};

/// Rows written by one insert at most.
const ROWS_PER_INSERT: usize = 1_000;

/// What a settlement takes from the queue.
pub(crate) enum Rows {
    /// This replica's rows of `day`.
    Own { day: u64, rows: Vec<u64> },
    /// Rows older than this, of any replica, one day at a time.
    Adopt { older_than: Duration },
}

/// How old another replica's rows must be before a replica settles them: ten of its flushes,
/// and never less than two seconds, so a live replica nearly always settles its own first.
pub(crate) fn adopt_after(flush_interval: Duration) -> Duration {
    flush_interval
        .saturating_mul(10)
        .max(Duration::from_secs(2))
}

/// One request's usage on its way into the queue.
struct Row {
    row: u64,
    day: u64,
    account: Address,
    draw: Draw,
    prompt_tokens: u64,
    completion_tokens: u64,
    durable: oneshot::Sender<()>,
}

/// Signals that a request's usage is durable in the queue.
pub struct Recorded(oneshot::Receiver<()>);

impl Recorded {
    /// Waits until the usage is durable, or `bound` passes (PostgreSQL out of reach: the row is
    /// written when it returns); true if it is durable.
    pub async fn wait(self, bound: Duration) -> bool {
        matches!(tokio::time::timeout(bound, self.0).await, Ok(Ok(())))
    }
}

/// The sending side, held by the economy.
pub(crate) struct UsageQueue {
    rows: tokio::sync::mpsc::UnboundedSender<Row>,
    next_row: AtomicU64,
}

impl UsageQueue {
    /// Starts the task (on the current Tokio runtime) that writes rows for `replica` into
    /// `table`.
    pub(crate) fn start(
        connector: Connector,
        table: String,
        replica: [u8; 16],
        meter: Arc<Meter>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            std::io::Error::other("the cluster's usage queue is written from a Tokio runtime")
        })?;
        let (rows, receiver) = tokio::sync::mpsc::unbounded_channel();
        runtime.spawn(async move {
            write_loop(&connector, &table, &replica, &meter, receiver).await;
        });
        Ok(Self {
            rows,
            next_row: AtomicU64::new(1),
        })
    }

    /// The row the next request's usage will be written as.
    pub(crate) fn next_row(&self) -> u64 {
        self.next_row.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a request's usage (already charged in the meter as `row`, recording).
    pub(crate) fn record(
        &self,
        row: u64,
        day: u64,
        account: Address,
        draw: Draw,
        (prompt_tokens, completion_tokens): (u64, u64),
    ) -> Recorded {
        let (durable, recorded) = oneshot::channel();
        let sent = self.rows.send(Row {
            row,
            day,
            account,
            draw,
            prompt_tokens,
            completion_tokens,
            durable,
        });
        if sent.is_err() {
            crate::stop_the_process("the usage queue's writer stopped");
        }
        Recorded(recorded)
    }
}

/// Writes queued rows, as many per insert as are waiting, until the economy is dropped. An
/// insert that fails is tried again (on a new connection) until it is taken: rows are keyed by
/// (replica, row), so an insert whose answer was lost cannot write a row twice. Metered
/// requests are refused meanwhile (the committer finds PostgreSQL out of reach too), so what
/// waits here is bounded by the requests that were in flight.
async fn write_loop(
    connector: &Connector,
    table: &str,
    replica: &[u8; 16],
    meter: &Meter,
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<Row>,
) {
    // The connection, and the insert prepared on it once.
    let mut connection: Option<(tokio_postgres::Client, tokio_postgres::Statement)> = None;
    let mut batch = Vec::new();
    while receiver.recv_many(&mut batch, ROWS_PER_INSERT).await > 0 {
        loop {
            if connection.is_none() {
                match connect(connector, table).await {
                    Ok(connected) => connection = Some(connected),
                    Err(error) => {
                        tracing::warn!(%error, rows = batch.len(), "cannot reach the shared usage queue; trying again");
                        tokio::time::sleep(RESOLVE_RETRY).await;
                        continue;
                    }
                }
            }
            let Some((client, statement)) = connection.as_ref() else {
                continue;
            };
            match insert(client, statement, replica, &batch).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(%error, rows = batch.len(), "cannot write usage to the shared queue; trying again");
                    connection = None;
                    tokio::time::sleep(RESOLVE_RETRY).await;
                }
            }
        }
        for row in batch.drain(..) {
            meter.recorded(row.account, row.row);
            let _ = row.durable.send(());
        }
    }
}

async fn connect(
    connector: &Connector,
    table: &str,
) -> Result<(tokio_postgres::Client, tokio_postgres::Statement), SharedError> {
    let client = connector.connect().await?;
    let statement = client.prepare(&insert_statement(table)).await?;
    Ok((client, statement))
}

fn to_bigint(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_bigint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

fn units(bytes: &[u8]) -> u128 {
    bytes
        .try_into()
        .map(u128::from_be_bytes)
        .unwrap_or_default()
}

fn slices(amounts: &[[u8; 16]]) -> Vec<&[u8]> {
    amounts.iter().map(<[u8; 16]>::as_slice).collect()
}

fn insert_statement(table: &str) -> String {
    format!(
        "INSERT INTO {table} (replica, row_id, day, account, requests, prompt_tokens, \
           completion_tokens, allowance_units, bundled_credit_units, usd_units) \
         SELECT $1, row_id, day, account, 1, prompt_tokens, completion_tokens, \
           allowance_units, bundled_credit_units, usd_units \
         FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BYTEA[], $5::BIGINT[], $6::BIGINT[], \
           $7::BYTEA[], $8::BYTEA[], $9::BYTEA[]) \
           AS rows (row_id, day, account, prompt_tokens, completion_tokens, \
             allowance_units, bundled_credit_units, usd_units) \
         ON CONFLICT DO NOTHING"
    )
}

async fn insert(
    client: &tokio_postgres::Client,
    statement: &tokio_postgres::Statement,
    replica: &[u8; 16],
    batch: &[Row],
) -> Result<(), SharedError> {
    let bigints = |value: fn(&Row) -> u64| -> Vec<i64> {
        batch.iter().map(|row| to_bigint(value(row))).collect()
    };
    let amounts = |value: fn(&Row) -> u128| -> Vec<[u8; 16]> {
        batch.iter().map(|row| value(row).to_be_bytes()).collect()
    };
    let accounts: Vec<&[u8]> = batch.iter().map(|row| row.account.0.as_slice()).collect();
    let (rows, days) = (bigints(|row| row.row), bigints(|row| row.day));
    let (prompt, completion) = (
        bigints(|row| row.prompt_tokens),
        bigints(|row| row.completion_tokens),
    );
    let allowance = amounts(|row| row.draw.allowance);
    let bundled = amounts(|row| row.draw.bundled);
    let usd = amounts(|row| row.draw.usd);
    client
        .execute(
            statement,
            &[
                &replica.as_slice(),
                &rows,
                &days,
                &accounts,
                &prompt,
                &completion,
                &slices(&allowance),
                &slices(&bundled),
                &slices(&usd),
            ],
        )
        .await?;
    Ok(())
}

/// Deletes the rows a settlement takes (inside the writer's transaction) and sums them by
/// account, for the settlement's one day.
pub(crate) fn take(
    client: &mut postgres::Client,
    table: &str,
    replica: &[u8],
    rows: &Rows,
) -> Result<Option<(u64, Vec<UsageCharge>)>, SharedError> {
    const COLUMNS: &str = "day, account, requests, prompt_tokens, completion_tokens, \
                           allowance_units, bundled_credit_units, usd_units";
    let taken = match rows {
        Rows::Own { day, rows } => {
            let rows: Vec<i64> = rows.iter().map(|row| to_bigint(*row)).collect();
            client.query(
                &format!(
                    "DELETE FROM {table} WHERE replica = $1 AND day = $2 \
                     AND row_id = ANY($3::BIGINT[]) RETURNING {COLUMNS}"
                ),
                &[&replica, &to_bigint(*day), &rows],
            )?
        }
        Rows::Adopt { older_than } => {
            let older_than_ms = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
            let limit = i64::try_from(ledger::MAXIMUM_USAGE_ENTRIES).unwrap_or(i64::MAX);
            client.query(
                &format!(
                    "WITH stale AS (\
                       SELECT replica, row_id, day FROM {table} \
                       WHERE queued_at < now() - $1::BIGINT * INTERVAL '1 millisecond'), \
                     chosen AS (\
                       SELECT replica, row_id FROM stale \
                       WHERE day = (SELECT MIN(day) FROM stale) LIMIT $2) \
                     DELETE FROM {table} WHERE (replica, row_id) IN (SELECT * FROM chosen) \
                     RETURNING {COLUMNS}"
                ),
                &[&older_than_ms, &limit],
            )?
        }
    };
    let mut day = None;
    let mut by_account: BTreeMap<[u8; 20], UsageCharge> = BTreeMap::new();
    for row in taken {
        day = Some(from_bigint(row.get(0)));
        let account: [u8; 20] = row
            .get::<_, &[u8]>(1)
            .try_into()
            .map_err(|_| SharedError::Config("a usage row names no account".into()))?;
        let entry = by_account.entry(account).or_insert_with(|| UsageCharge {
            account: Address(account),
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            allowance_units: 0,
            bundled_credit_units: 0,
            usd_units: 0,
        });
        entry.requests = entry.requests.saturating_add(from_bigint(row.get(2)));
        entry.prompt_tokens = entry.prompt_tokens.saturating_add(from_bigint(row.get(3)));
        entry.completion_tokens = entry
            .completion_tokens
            .saturating_add(from_bigint(row.get(4)));
        entry.allowance_units = entry.allowance_units.saturating_add(units(row.get(5)));
        entry.bundled_credit_units = entry.bundled_credit_units.saturating_add(units(row.get(6)));
        entry.usd_units = entry.usd_units.saturating_add(units(row.get(7)));
    }
    Ok(day.map(|day| (day, by_account.into_values().collect())))
}
