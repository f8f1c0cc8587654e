//! `export`: the journal as JSON lines, one record a line, for audits and tooling. Owns the JSON
//! shape of records and operations; it writes only what the journal holds (no replay, no
//! derived state). The JSON is written by hand: every string in it is a fixed name, hex or
//! decimal digits, so nothing needs escaping, and the shape stays explicit.
//!
//! A line: `{"sequence":1,"commit_first_sequence":1,"time_seconds":…,"signer":"0x…",
//! "signature":"0x…","op":{"type":…},"previous_record_hash":"…","record_hash":"…"}`. u64
//! fields (sequences, times, supplies of whole DIEM, days, request and token counts) are JSON
//! numbers; u128 amounts are decimal strings, because JSON readers commonly parse numbers as
//! doubles and would round them.

use std::io::Write;
use std::path::Path;

use ledger::{
    Address, Allocation, Asset, CurvePoint, GenesisConfig, Op, Parameters, SplitPoint, UsageCharge,
};

use crate::error::StoreError;
use crate::format::Record;
use crate::hex;
use crate::journal::{self, TornTail};

/// What [`export`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportReport {
    pub records: u64,
    /// A torn tail at the end of the journal, not exported.
    pub torn_tail: Option<TornTail>,
}

/// Writes every valid record of the journal in `dir` to `out` as JSON lines, checking record
/// hashes and the chain on the way (damage in the middle fails the export). Changes nothing.
pub fn export(dir: &Path, out: &mut impl Write) -> Result<ExportReport, StoreError> {
    let mut line = String::new();
    let report = journal::read_records(dir, |record| {
        line.clear();
        record_json(&record, &mut line);
        line.push('\n');
        out.write_all(line.as_bytes())
            .map_err(|error| StoreError::io("write export of", dir, error))
    })?;
    out.flush()
        .map_err(|error| StoreError::io("write export of", dir, error))?;
    Ok(ExportReport {
        records: report.records,
        torn_tail: report.torn_tail,
    })
}

/// Appends one record as a JSON object (no newline).
pub(crate) fn record_json(record: &Record, out: &mut String) {
    let mut json = Json { out };
    json.open();
    json.number("sequence", record.sequence);
    json.number("commit_first_sequence", record.commit_first_sequence);
    json.number("time_seconds", record.time_seconds);
    json.address("signer", &record.signer);
    json.text(
        "signature",
        &format!("0x{}", hex::encode(&record.signature)),
    );
    json.key("op");
    op_json(&record.op, &mut json);
    json.text(
        "previous_record_hash",
        &record.previous_record_hash.to_string(),
    );
    json.text("record_hash", &record.record_hash.to_string());
    json.close();
}

fn op_json(op: &Op, json: &mut Json<'_>) {
    json.open();
    match op {
        Op::Genesis(config) => {
            json.text("type", "genesis");
            genesis_json(config, json);
        }
        Op::Transfer {
            asset,
            to,
            amount_units,
        } => {
            json.text("type", "transfer");
            json.text(
                "asset",
                match asset {
                    Asset::Vvv => "vvv",
                    Asset::Diem => "diem",
                },
            );
            json.address("to", to);
            json.amount("amount_units", *amount_units);
        }
        Op::ClaimAirdrop => json.text("type", "claim_airdrop"),
        Op::BurnUnclaimedAirdrop => json.text("type", "burn_unclaimed_airdrop"),
        Op::ClaimVested => json.text("type", "claim_vested"),
        Op::Stake { vvv_units } => {
            json.text("type", "stake");
            json.amount("vvv_units", *vvv_units);
        }
        Op::InitiateUnstake { svvv_units } => {
            json.text("type", "initiate_unstake");
            json.amount("svvv_units", *svvv_units);
        }
        Op::FinalizeUnstake => json.text("type", "finalize_unstake"),
        Op::ClaimRewards => json.text("type", "claim_rewards"),
        Op::ClaimAndStakeRewards => json.text("type", "claim_and_stake_rewards"),
        Op::MintDiem {
            svvv_to_lock_units,
            min_diem_out_units,
        } => {
            json.text("type", "mint_diem");
            json.amount("svvv_to_lock_units", *svvv_to_lock_units);
            json.amount("min_diem_out_units", *min_diem_out_units);
        }
        Op::BurnDiem { diem_units } => {
            json.text("type", "burn_diem");
            json.amount("diem_units", *diem_units);
        }
        Op::StakeDiem { diem_units } => {
            json.text("type", "stake_diem");
            json.amount("diem_units", *diem_units);
        }
        Op::InitiateDiemUnstake { diem_units } => {
            json.text("type", "initiate_diem_unstake");
            json.amount("diem_units", *diem_units);
        }
        Op::FinalizeDiemUnstake => json.text("type", "finalize_diem_unstake"),
        Op::SetEmissionRate {
            vvv_units_per_second,
        } => {
            json.text("type", "set_emission_rate");
            json.amount("vvv_units_per_second", *vvv_units_per_second);
        }
        Op::SetMintCurve { points } => {
            json.text("type", "set_mint_curve");
            curve_json(points, json);
        }
        Op::SetParameters(parameters) => {
            json.text("type", "set_parameters");
            json.key("parameters");
            parameters_json(parameters, json);
        }
        Op::ReportUtilization { utilization_bps } => {
            json.text("type", "report_utilization");
            json.number("utilization_bps", u64::from(*utilization_bps));
        }
        Op::BuybackAndBurn {
            vvv_units,
            revenue_usd_units,
        } => {
            json.text("type", "buyback_and_burn");
            json.amount("vvv_units", *vvv_units);
            json.amount("revenue_usd_units", *revenue_usd_units);
        }
        Op::CreditAccount {
            account,
            usd_units,
            bundled_credit_units,
        } => {
            json.text("type", "credit_account");
            json.address("account", account);
            json.amount("usd_units", *usd_units);
            json.amount("bundled_credit_units", *bundled_credit_units);
        }
        Op::SettleUsage { day, entries } => {
            json.text("type", "settle_usage");
            json.number("day", *day);
            usage_charges_json(entries, json);
        }
    }
    json.close();
}

fn usage_charges_json(entries: &[UsageCharge], json: &mut Json<'_>) {
    json.key("entries");
    json.open_list();
    for entry in entries {
        let UsageCharge {
            account,
            requests,
            prompt_tokens,
            completion_tokens,
            allowance_units,
            bundled_credit_units,
            usd_units,
        } = entry;
        json.element();
        json.open();
        json.address("account", account);
        json.number("requests", *requests);
        json.number("prompt_tokens", *prompt_tokens);
        json.number("completion_tokens", *completion_tokens);
        json.amount("allowance_units", *allowance_units);
        json.amount("bundled_credit_units", *bundled_credit_units);
        json.amount("usd_units", *usd_units);
        json.close();
    }
    json.close_list();
}

fn genesis_json(config: &GenesisConfig, json: &mut Json<'_>) {
    let GenesisConfig {
        admin,
        treasury,
        incentive_fund,
        liquidity,
        team_grants,
        team_unlocked_at_genesis_bps,
        team_vesting_seconds,
        airdrop,
        airdrop_claim_window_seconds,
        emission_rate_vvv_units_per_second,
        parameters,
        mint_curve_points,
    } = config;
    json.address("admin", admin);
    json.key("treasury");
    allocation_json(treasury, json);
    json.key("incentive_fund");
    allocation_json(incentive_fund, json);
    json.key("liquidity");
    allocation_json(liquidity, json);
    allocations_json("team_grants", team_grants, json);
    json.number(
        "team_unlocked_at_genesis_bps",
        u64::from(*team_unlocked_at_genesis_bps),
    );
    json.number("team_vesting_seconds", *team_vesting_seconds);
    allocations_json("airdrop", airdrop, json);
    json.number(
        "airdrop_claim_window_seconds",
        *airdrop_claim_window_seconds,
    );
    json.amount(
        "emission_rate_vvv_units_per_second",
        *emission_rate_vvv_units_per_second,
    );
    json.key("parameters");
    parameters_json(parameters, json);
    curve_json(mint_curve_points, json);
}

fn allocation_json(allocation: &Allocation, json: &mut Json<'_>) {
    json.open();
    json.address("address", &allocation.address);
    json.amount("vvv_units", allocation.vvv_units);
    json.close();
}

fn allocations_json(key: &str, allocations: &[Allocation], json: &mut Json<'_>) {
    json.key(key);
    json.open_list();
    for allocation in allocations {
        json.element();
        allocation_json(allocation, json);
    }
    json.close_list();
}

fn curve_json(points: &[CurvePoint], json: &mut Json<'_>) {
    json.key("points");
    json.open_list();
    for point in points {
        json.element();
        json.open();
        json.number("supply_diem", point.supply_diem);
        json.amount("rate_svvv_units_per_diem", point.rate_svvv_units_per_diem);
        json.close();
    }
    json.close_list();
}

fn parameters_json(parameters: &Parameters, json: &mut Json<'_>) {
    let Parameters {
        unstake_cooldown_seconds,
        diem_unstake_cooldown_seconds,
        locked_yield_bps,
        minimum_spendable_staked_diem_units,
        utilization_split,
    } = parameters;
    json.open();
    json.number("unstake_cooldown_seconds", *unstake_cooldown_seconds);
    json.number(
        "diem_unstake_cooldown_seconds",
        *diem_unstake_cooldown_seconds,
    );
    json.number("locked_yield_bps", u64::from(*locked_yield_bps));
    json.amount(
        "minimum_spendable_staked_diem_units",
        *minimum_spendable_staked_diem_units,
    );
    json.key("utilization_split");
    json.open_list();
    for SplitPoint {
        utilization_bps,
        company_share_bps,
    } in &utilization_split.points
    {
        json.element();
        json.open();
        json.number("utilization_bps", u64::from(*utilization_bps));
        json.number("company_share_bps", u64::from(*company_share_bps));
        json.close();
    }
    json.close_list();
    json.close();
}

/// A minimal JSON writer for keys and values that never need escaping. It tracks whether a
/// comma is due, so callers write fields in order and nothing else.
struct Json<'a> {
    out: &'a mut String,
}

impl Json<'_> {
    fn separate(&mut self) {
        if !matches!(self.out.as_bytes().last(), None | Some(b'{' | b'[' | b':')) {
            self.out.push(',');
        }
    }

    fn open(&mut self) {
        self.out.push('{');
    }

    fn close(&mut self) {
        self.out.push('}');
    }

    fn open_list(&mut self) {
        self.out.push('[');
    }

    fn close_list(&mut self) {
        self.out.push(']');
    }

    fn element(&mut self) {
        self.separate();
    }

    /// Keys are fixed snake_case names from this file, so they are written as they are.
    fn key(&mut self, key: &str) {
        self.separate();
        self.out.push('"');
        self.out.push_str(key);
        self.out.push_str("\":");
    }

    fn number(&mut self, key: &str, value: u64) {
        self.key(key);
        self.out.push_str(&value.to_string());
    }

    fn amount(&mut self, key: &str, value: u128) {
        self.text(key, &value.to_string());
    }

    /// Values are names from this file, hex or digits, so they need no escaping either.
    fn text(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.push('"');
        self.out.push_str(value);
        self.out.push('"');
    }

    fn address(&mut self, key: &str, address: &Address) {
        self.text(key, &address.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RecordHash;

    #[test]
    fn a_record_is_one_line_of_the_documented_shape() {
        let record = Record {
            sequence: 3,
            commit_first_sequence: 2,
            time_seconds: 1_700_000_000,
            signer: Address([0xAB; 20]),
            signature: vec![0xDE, 0xAD],
            op: Op::Transfer {
                asset: Asset::Diem,
                to: Address([0x01; 20]),
                amount_units: u128::MAX,
            },
            previous_record_hash: RecordHash([0x11; 32]),
            record_hash: RecordHash([0x22; 32]),
            offset_bytes: 16,
        };
        let mut line = String::new();
        record_json(&record, &mut line);
        let expected = format!(
            "{{\"sequence\":3,\"commit_first_sequence\":2,\"time_seconds\":1700000000,\"signer\":\"0x{}\",\
             \"signature\":\"0xdead\",\"op\":{{\"type\":\"transfer\",\"asset\":\"diem\",\
             \"to\":\"0x{}\",\"amount_units\":\"{}\"}},\"previous_record_hash\":\"{}\",\
             \"record_hash\":\"{}\"}}",
            "ab".repeat(20),
            "01".repeat(20),
            u128::MAX,
            "11".repeat(32),
            "22".repeat(32),
        );
        assert_eq!(line, expected);
    }

    #[test]
    fn every_operation_exports_as_a_valid_json_object_with_its_type() {
        let mut types = std::collections::BTreeSet::new();
        for op in crate::codec::samples::one_of_each() {
            let mut text = String::new();
            op_json(&op, &mut Json { out: &mut text });
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|error| panic!("{text}: {error}"));
            let name = value["type"].as_str().expect("a type").to_owned();
            types.insert(name);
        }
        assert_eq!(types.len(), 22, "one name per variant: {types:?}");
    }

    #[test]
    fn a_usage_settlement_exports_its_day_and_every_entry() {
        let op = Op::SettleUsage {
            day: 20_115,
            entries: vec![
                UsageCharge {
                    account: Address([0xA1; 20]),
                    requests: 3,
                    prompt_tokens: 4,
                    completion_tokens: 5,
                    allowance_units: 6,
                    bundled_credit_units: 7,
                    usd_units: u128::MAX,
                },
                UsageCharge {
                    account: Address([0xB0; 20]),
                    requests: 1,
                    ..UsageCharge::default()
                },
            ],
        };
        let mut text = String::new();
        op_json(&op, &mut Json { out: &mut text });
        let expected = format!(
            "{{\"type\":\"settle_usage\",\"day\":20115,\"entries\":[\
             {{\"account\":\"0x{}\",\"requests\":3,\"prompt_tokens\":4,\
             \"completion_tokens\":5,\"allowance_units\":\"6\",\"bundled_credit_units\":\"7\",\
             \"usd_units\":\"{}\"}},\
             {{\"account\":\"0x{}\",\"requests\":1,\"prompt_tokens\":0,\
             \"completion_tokens\":0,\"allowance_units\":\"0\",\"bundled_credit_units\":\"0\",\
             \"usd_units\":\"0\"}}]}}",
            "a1".repeat(20),
            u128::MAX,
            "b0".repeat(20),
        );
        assert_eq!(text, expected);
        let value: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(value["entries"].as_array().map(Vec::len), Some(2));
    }
}
