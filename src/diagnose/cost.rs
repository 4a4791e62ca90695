//! The cost ledger's arithmetic: tokens in and out from each provider's reply, priced from a table in
//! config (per million tokens); local models cost 0 unless priced. Budgets are checked by the pipeline
//! against the store's ledger (per incident and per UTC day).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// US dollars per million input tokens.
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Model name → price. Models not listed cost 0 (local models).
pub type PriceTable = BTreeMap<String, Price>;

pub fn default_prices() -> PriceTable {
    let mut table = PriceTable::new();
    table.insert("claude-sonnet-4-5".into(), Price { input_per_mtok: 3.0, output_per_mtok: 15.0 });
    table.insert("claude-haiku-4-5".into(), Price { input_per_mtok: 1.0, output_per_mtok: 5.0 });
    table.insert("claude-opus-4-1".into(), Price { input_per_mtok: 15.0, output_per_mtok: 75.0 });
    table
}

pub fn cost(prices: &PriceTable, model: &str, tokens_in: u64, tokens_out: u64) -> f64 {
    match prices.get(model) {
        Some(p) => (tokens_in as f64 * p.input_per_mtok + tokens_out as f64 * p.output_per_mtok) / 1_000_000.0,
        None => 0.0,
    }
}

/// One model call, as the ledger and the audit log record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub level: String,
    pub provider: String,
    pub model: String,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost: f64,
    pub attempts: u32,
    /// Wall time of the call, retries included.
    pub duration_ms: u64,
    pub outcome: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_add_up() {
        let prices = default_prices();
        // 2095 in, 503 out on Sonnet: 2095 * 3 / 1e6 + 503 * 15 / 1e6.
        let c = cost(&prices, "claude-sonnet-4-5", 2095, 503);
        assert!((c - 0.013830).abs() < 1e-9, "{c}");
        assert_eq!(cost(&prices, "qwen2.5:7b-instruct", 10_000, 10_000), 0.0, "local models are free");
    }
}
