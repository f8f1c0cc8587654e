//! An in-process EVM (revm) over an empty in-memory state: deploy contracts, send transactions
//! and read views at a block time the caller sets. No fees (base fee zero), no nonce checks:
//! what is measured is what the contracts do, and gas used.

use alloy_primitives::{Address, Bytes, Log, U256};
use alloy_sol_types::SolCall;
use revm::context::result::{ExecutionResult, Output};
use revm::context::{BlockEnv, CfgEnv, TxEnv};
use revm::database::{CacheDB, EmptyDB};
use revm::primitives::TxKind;
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, Journal, MainBuilder, MainContext, MainnetEvm};

type Db = CacheDB<EmptyDB>;
type Ctx = Context<BlockEnv, TxEnv, CfgEnv, Db, Journal<Db>, ()>;

/// The chain id the EVM reports (anvil's).
pub const CHAIN_ID: u64 = 31_337;
/// Gas a block may use.
const BLOCK_GAS_LIMIT: u64 = 30_000_000;
/// Gas each transaction may use: the cap of EIP-7825 (2^24).
const GAS_LIMIT: u64 = 1 << 24;

/// What a transaction did.
#[derive(Debug)]
pub enum Outcome {
    Success {
        output: Bytes,
        gas_used: u64,
        logs: Vec<Log>,
    },
    /// Reverted, with the revert data (a custom error's selector and arguments).
    Revert { data: Bytes, gas_used: u64 },
    /// Stopped by the EVM itself (out of gas, an invalid opcode).
    Halt(String),
}

pub struct Evm {
    evm: MainnetEvm<Ctx>,
}

impl Evm {
    /// An empty chain whose next block is at `timestamp`.
    pub fn new(timestamp: u64) -> Self {
        let evm = Context::mainnet()
            .with_db(CacheDB::new(EmptyDB::default()))
            .modify_cfg_chained(|cfg| {
                cfg.disable_nonce_check = true;
                cfg.chain_id = CHAIN_ID;
            })
            .modify_block_chained(|block| {
                block.timestamp = U256::from(timestamp);
                block.gas_limit = BLOCK_GAS_LIMIT;
                block.basefee = 0;
            })
            .build_mainnet();
        Self { evm }
    }

    /// Moves the next block to `timestamp` (and the block number on by one).
    pub fn set_time(&mut self, timestamp: u64) {
        self.evm.ctx.modify_block(|block| {
            block.timestamp = U256::from(timestamp);
            block.number += U256::from(1);
        });
    }

    fn transaction(from: Address, kind: TxKind, data: Bytes) -> TxEnv {
        TxEnv::builder()
            .caller(from)
            .kind(kind)
            .data(data)
            .gas_limit(GAS_LIMIT)
            .gas_price(0)
            .chain_id(Some(CHAIN_ID))
            .build_fill()
    }

    fn run(&mut self, transaction: TxEnv, commit: bool) -> Outcome {
        let result = if commit {
            self.evm.transact_commit(transaction)
        } else {
            self.evm.transact(transaction).map(|result| result.result)
        };
        match result {
            Ok(ExecutionResult::Success {
                output, gas, logs, ..
            }) => Outcome::Success {
                output: match output {
                    Output::Call(bytes) => bytes,
                    Output::Create(_, address) => {
                        Bytes::copy_from_slice(address.unwrap_or_default().as_slice())
                    }
                },
                gas_used: gas.tx_gas_used(),
                logs,
            },
            Ok(ExecutionResult::Revert { output, gas, .. }) => Outcome::Revert {
                data: output,
                gas_used: gas.tx_gas_used(),
            },
            Ok(ExecutionResult::Halt { reason, .. }) => Outcome::Halt(format!("{reason:?}")),
            Err(error) => Outcome::Halt(format!("{error:?}")),
        }
    }

    /// Deploys `code` (creation bytecode and encoded constructor arguments) from `from`.
    pub fn deploy(&mut self, from: Address, code: Bytes) -> Result<Address, String> {
        match self.run(Self::transaction(from, TxKind::Create, code), true) {
            Outcome::Success { output, .. } => Ok(Address::from_slice(&output)),
            other => Err(format!("deploying failed: {other:?}")),
        }
    }

    /// Sends a transaction and keeps what it did.
    pub fn send<C: SolCall>(&mut self, from: Address, to: Address, call: &C) -> Outcome {
        self.run(
            Self::transaction(from, TxKind::Call(to), call.abi_encode().into()),
            true,
        )
    }

    /// Reads a view: runs the call and keeps nothing.
    pub fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, String> {
        let output = self
            .view_raw(to, call.abi_encode().into())
            .map_err(|error| format!("{}: {error}", C::SIGNATURE))?;
        C::abi_decode_returns(&output).map_err(|error| error.to_string())
    }

    /// Reads a view from encoded call data; its encoded return data.
    pub fn view_raw(&mut self, to: Address, data: Bytes) -> Result<Bytes, String> {
        match self.run(
            Self::transaction(Address::ZERO, TxKind::Call(to), data),
            false,
        ) {
            Outcome::Success { output, .. } => Ok(output),
            other => Err(format!("the view failed: {other:?}")),
        }
    }
}
