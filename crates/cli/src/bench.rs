//! placeholder
use anyhow::Result;
use clap::Args;
use facegate_vision::ModelsDir;
#[derive(Args)]
pub struct BenchArgs {}
pub fn run(_m: &ModelsDir, _a: &BenchArgs) -> Result<()> { Ok(()) }
