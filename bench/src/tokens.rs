//! `tokens`: what Privacy Pass capacity tokens cost, in process. Issuance per token (the
//! client's blinding, the issuer's blind RSA signature, the client's unblinding and check),
//! redemption per token (reading the `PrivateToken` header and verifying the signature) beside
//! the plain path's API key check (SHA-256 of the key and a map lookup), the spent-token store
//! (reserve and fsynced commit, one request at a time and 64 at once), and deriving an
//! epoch's key. Results go to `bench/results/tokens.{md,json}`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::tokens::EpochKey;
use gateway::tokens::spent::SpentTokens;
use privacy::tokens::{IssuerKey, authorization_value, parse_authorization, request_batch};
use privacypass::generic_tokens::GenericBatchTokenRequest;
use serde::Serialize;

use crate::metering::median;
use sha2::Digest as _;

const EPOCH: u64 = 20_000;
const TOKEN_VALUE: u128 = 1_000_000_000_000_000;
const BATCH: usize = 100;
const ROUNDS: usize = 5;
/// Tokens redeemed per measurement of the spent-token store.
const COMMITS: usize = 2_000;

#[derive(Serialize, Default)]
struct Report {
    key_derivation_ms: f64,
    /// Per token, medians of the rounds.
    client_blind_us: f64,
    issuer_sign_us: f64,
    client_finish_us: f64,
    issuer_tokens_per_second_per_core: f64,
    verify_us: f64,
    api_key_check_us: f64,
    verify_per_second_per_core: f64,
    reserve_release_us: f64,
    commits_per_second_one_in_flight: f64,
    commits_per_second_64_in_flight: f64,
}

fn per_item_us(elapsed: Duration, items: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / items as f64
}

pub async fn run() -> anyhow::Result<()> {
    let seed = [42u8; gateway::tokens::SEED_BYTES];
    let mut report = Report::default();

    let mut derivations = Vec::new();
    let mut key = None;
    for round in 0..ROUNDS as u64 {
        let started = Instant::now();
        let derived = EpochKey::derive(&seed, EPOCH + round, TOKEN_VALUE)
            .map_err(|error| anyhow::anyhow!(error))?;
        derivations.push(started.elapsed().as_secs_f64() * 1e3);
        key = Some(derived);
    }
    report.key_derivation_ms = median(derivations);
    let key = Arc::new(key.ok_or_else(|| anyhow::anyhow!("no key"))?);
    let issuer = IssuerKey::from_directory_json(key.directory())?;
    eprintln!("tokens: key derivation {:.1} ms", report.key_derivation_ms);

    // Issuance, one batch of BATCH a round.
    let (mut blind, mut sign, mut finish) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let (body, pending) = request_batch(&issuer, BATCH)?;
        blind.push(per_item_us(started.elapsed(), BATCH));
        let batch = GenericBatchTokenRequest::try_from_bytes(&body)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let started = Instant::now();
        let signed = key.sign(batch).map_err(|error| anyhow::anyhow!(error))?;
        sign.push(per_item_us(started.elapsed(), BATCH));
        let started = Instant::now();
        tokens.extend(pending.finish(&signed)?);
        finish.push(per_item_us(started.elapsed(), BATCH));
    }
    report.client_blind_us = median(blind);
    report.issuer_sign_us = median(sign);
    report.client_finish_us = median(finish);
    report.issuer_tokens_per_second_per_core = 1e6 / report.issuer_sign_us;
    eprintln!(
        "tokens: issuance per token: blind {:.0} µs, sign {:.0} µs, finish {:.0} µs",
        report.client_blind_us, report.issuer_sign_us, report.client_finish_us
    );

    // Redemption: header to verified token, beside the plain path's key check, interleaved.
    let headers: Vec<String> = tokens
        .iter()
        .map(|token| authorization_value(std::slice::from_ref(token)))
        .collect::<Result<_, _>>()?;
    let keys: HashMap<[u8; 32], usize> = (0..10_000)
        .map(|index| {
            (
                sha2::Sha256::digest(format!("sk-{index:032}").as_bytes()).into(),
                index,
            )
        })
        .collect();
    let api_keys: Vec<String> = (0..headers.len())
        .map(|index| format!("sk-{:032}", index % 10_000))
        .collect();
    let (mut verify, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for header in &headers {
            let tokens = parse_authorization(header)?
                .ok_or_else(|| anyhow::anyhow!("not a token header"))?;
            for token in &tokens {
                key.verify(token)
                    .map_err(|refusal| anyhow::anyhow!("{refusal:?}"))?;
            }
        }
        verify.push(per_item_us(started.elapsed(), headers.len()));
        let started = Instant::now();
        let mut found = 0usize;
        for api_key in &api_keys {
            let hash: [u8; 32] = sha2::Sha256::digest(api_key.as_bytes()).into();
            found += keys.get(&hash).copied().unwrap_or_default();
        }
        std::hint::black_box(found);
        plain.push(per_item_us(started.elapsed(), api_keys.len()));
    }
    report.verify_us = median(verify);
    report.api_key_check_us = median(plain);
    report.verify_per_second_per_core = 1e6 / report.verify_us;
    eprintln!(
        "tokens: verify {:.1} µs vs API key check {:.2} µs",
        report.verify_us, report.api_key_check_us
    );

    // The spent-token store on this machine's disk.
    let dir = tempfile::tempdir()?;
    let store = SpentTokens::open(dir.path(), EPOCH)?;
    let nonce = |index: usize, round: usize| {
        let mut nonce = [0u8; 32];
        nonce[..8].copy_from_slice(&(index as u64).to_be_bytes());
        nonce[8..16].copy_from_slice(&(round as u64).to_be_bytes());
        nonce
    };
    let (mut reserve, mut one, mut many) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let started = Instant::now();
        for index in 0..COMMITS {
            let reservation = store
                .reserve(EPOCH, vec![nonce(index, 3 * round)])
                .map_err(|refused| anyhow::anyhow!("{refused:?}"))?;
            drop(reservation);
        }
        reserve.push(per_item_us(started.elapsed(), COMMITS));

        let started = Instant::now();
        for index in 0..COMMITS / 10 {
            store
                .reserve(EPOCH, vec![nonce(index, 3 * round + 1)])
                .map_err(|refused| anyhow::anyhow!("{refused:?}"))?
                .commit()
                .await?;
        }
        one.push((COMMITS / 10) as f64 / started.elapsed().as_secs_f64());

        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..64 {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                for index in (lane..COMMITS).step_by(64) {
                    store
                        .reserve(EPOCH, vec![nonce(index, 3 * round + 2)])
                        .map_err(|refused| anyhow::anyhow!("{refused:?}"))?
                        .commit()
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        many.push(COMMITS as f64 / started.elapsed().as_secs_f64());
    }
    report.reserve_release_us = median(reserve);
    report.commits_per_second_one_in_flight = median(one);
    report.commits_per_second_64_in_flight = median(many);
    eprintln!(
        "tokens: commits/s {:.0} one at a time, {:.0} with 64 in flight",
        report.commits_per_second_one_in_flight, report.commits_per_second_64_in_flight
    );

    let results = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&results)?;
    std::fs::write(
        results.join("tokens.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let table = format!(
        "# Capacity tokens: issuance and redemption\n\n\
         Privacy Pass type 0x0002 (blind RSA 2048, SHA-384, PSS), one core. Medians of {ROUNDS} rounds; issuance in batches of {BATCH}.\n\n\
         | step | per token | rate |\n|---|---|---|\n\
         | client: blind a token request | {:.0} µs | |\n\
         | issuer: blind-sign | {:.0} µs | {:.0} tokens/s per core |\n\
         | client: unblind and check the signature | {:.0} µs | |\n\
         | gateway: read the header and verify the token | {:.1} µs | {:.0} per second per core |\n\
         | plain path: SHA-256 of an API key and a map lookup | {:.2} µs | |\n\
         | verify ÷ API key check | {:.0}× | |\n\
         | spent store: reserve and release (memory) | {:.2} µs | |\n\
         | spent store: reserve and commit (fsync), one at a time | | {:.0} /s |\n\
         | spent store: reserve and commit (fsync), 64 in flight | | {:.0} /s |\n\
         | deriving an epoch's key (once a day) | {:.0} ms | |\n",
        report.client_blind_us,
        report.issuer_sign_us,
        report.issuer_tokens_per_second_per_core,
        report.client_finish_us,
        report.verify_us,
        report.verify_per_second_per_core,
        report.api_key_check_us,
        report.verify_us / report.api_key_check_us,
        report.reserve_release_us,
        report.commits_per_second_one_in_flight,
        report.commits_per_second_64_in_flight,
        report.key_derivation_ms,
    );
    std::fs::write(results.join("tokens.md"), &table)?;
    println!("{table}");
    Ok(())
}
